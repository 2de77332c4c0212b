"""Serving stage: Ray Serve scoring application over a trained model artifact."""
