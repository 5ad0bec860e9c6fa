"""Traffic routers: the data plane. The builtin asyncio proxy first."""
