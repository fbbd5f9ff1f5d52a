"""The CLI, one module per command group; each exposes `register(app, eval_app)`."""
