"""An unmodified Flask app: app.run(port=$PORT), with werkzeug's reloader when given --reload; answers its pid."""

import os
import sys

from flask import Flask

app = Flask(__name__)


@app.get("/")
def pid() -> str:
    return f"{os.getpid()}\n"


if __name__ == "__main__":
    app.run(port=int(os.environ["PORT"]), use_reloader="--reload" in sys.argv)
