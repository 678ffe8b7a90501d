"""Serving a team: users kept apart by their tokens (users.py), tasks on a store every worker shares
(tasks.py), and upstream limits all workers respect together (limits.py), through Redis when
IMAGEGATE_REDIS_URL is set (backend.py), else within this process. Plain Python: the MCP surface
(app.py), the jobs (jobs.py) and the HTTP workers (transports.py) use it."""
