"""Domain: use cases, models and errors. Never imports grpc."""
