"""The bundled demo text-to-image model: synthetic shape data, its tokenizer, training and evaluation."""
