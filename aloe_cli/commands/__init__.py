"""One module per verb; each exposes `register(app)`. Only this layer imports typer and rich."""
