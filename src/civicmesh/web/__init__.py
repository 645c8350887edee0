"""The city operations centre: a live web dashboard served by the platform at `/`.

The page (plain JavaScript modules and SVG in `static/`, no front-end build step) reads everything through the
platform's public APIs with the signed-in user's credential, so the exchange gate decides what each panel shows.
`api.py` serves the page, its files and the base map; `layers.py` answers `/web/layers`, every map layer in one
screened query; `live.py` is `/web/events`, the server-sent-events stream of entity changes screened per connected
user by the same gate.
"""
