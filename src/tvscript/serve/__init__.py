"""``tvscript serve``: a one-page web app and a JSON/SSE HTTP API over a loaded model.

``create_app(model, limits)`` builds the FastAPI app (see ``app.py``); ``serve`` runs it
with uvicorn on loopback unless told otherwise.
"""

from .app import Limits, create_app, serve

__all__ = ["Limits", "create_app", "serve"]
