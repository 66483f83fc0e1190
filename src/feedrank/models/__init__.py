"""Networks only: they return embeddings or logits. Losses and metrics live in train/ and eval/."""
