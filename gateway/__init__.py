"""The REST gateway: serves the v1 JSON-over-HTTP contract (`/api/...`) that existing
Dropfile clients speak, translating each request into one gRPC call to a backend."""
