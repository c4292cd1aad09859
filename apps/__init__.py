"""Thin apps that call the model server over its TF Serving gRPC API."""
