"""Transport: HTTP, the live WebSocket layer, the uvicorn adapter, pages and the admin."""
