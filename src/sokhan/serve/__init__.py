"""`sokhan serve`: an OpenAI-compatible HTTP API and a browser page (chat, and an inspector of attention and next-token
probabilities) over one trained model; over a translation model, a translate endpoint and a page that translates.

`create_app(lm)` builds the ASGI app; `serve(lm, host, port)` runs it with uvicorn. The
pieces: `schemas` (the request bodies), `errors` (OpenAI's error shape), `worker` (the
model's one generation thread), `guard` (the Host and Origin a request may come with), `app`
(the routes and the limits), `static/` (the page, no build step).
"""

from sokhan.serve.app import create_app, default_model_name, serve

__all__ = ["create_app", "default_model_name", "serve"]
