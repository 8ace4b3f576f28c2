"""An unmodified one-file Django project: `python django_app.py [--noreload]` runs runserver on 127.0.0.1:$PORT; answers its pid."""

import os
import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="only-for-tests",
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
)


def pid(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{os.getpid()}\n")


urlpatterns = [path("", pid)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(
        [sys.argv[0], "runserver", f"127.0.0.1:{os.environ['PORT']}", *sys.argv[1:]]
    )
