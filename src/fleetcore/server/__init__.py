"""The control server: decides which device may take which commit.

Only this package (and ``fleetcore.cli.server``) imports the server's
libraries (starlette, uvicorn, sqlalchemy, jinja2): the agent never pays
for them.
"""
