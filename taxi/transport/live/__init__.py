"""The live path, one route from a committed change to a socket:

- protocol.py   — the two GraphQL-over-WebSocket subprotocols: messages, frames, close codes
- endpoint.py   — the WebSocket side of /graphql: handshake, one Socket each, 1001 on shutdown
- socket.py     — one connection's state machine: auth, token expiry, init deadline, keep-alive
- operations.py — one socket's operations, run by the executor (taxi/api/executor.py); live records
- hub.py        — one broadcast subscription per channel; per event filter + shared frame
- wire.py       — a socket's outbound frames: written now, or newest-per-trip, bounded
- registry.py   — this process's signed-in sockets: per-user cap, closed when a session ends
- taxi/transport/server.py (uvicorn protocol) — the frame-write seam to the transport
"""
