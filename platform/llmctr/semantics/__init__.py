"""Semantics stage: features and samples as text, LLM text encoders, the Ray Data embedding job with its
vector cache, and the semantic tables (field / feature / entity vectors aligned with the feature map)."""
