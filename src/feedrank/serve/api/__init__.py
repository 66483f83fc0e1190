"""The HTTP layer, shaped like FastAPI's full-stack template: request and response models
(`schemas`), dependencies for the service and credentials (`deps`), one router per area
(`routes/`), pure-ASGI middleware for body limits and request metrics, and error handlers that
never fail on the value they report. `feedrank.serve.app.create_app` puts them together."""
