"""imagegate: one MCP server for image generation and editing across many models and gateways."""

__version__ = "0.1.0"
