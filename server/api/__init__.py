"""The gRPC layer: servicers translate messages to domain calls and back, nothing else."""
