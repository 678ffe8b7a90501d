"""End-to-end tests against the upstream emulator (tools/emulator): tool calls in memory through
the SDK's client, and the real server over stdio where the process boundary is what is tested."""
