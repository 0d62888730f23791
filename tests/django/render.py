"""Renders templates with Django's own engine, as the older system did.

Reads a JSON list of {"template": str, "context": object} on stdin and
writes a JSON list of {"output": str} or {"error": str}, one per case.
Like the older system: Template(text).render(Context(context)), from the
default engine (autoescape on), USE_TZ with TIME_ZONE UTC; `{% now %}`
sees the moment given as "now" (Unix seconds) instead of the clock.
"""
import datetime
import json
import sys

import django
from django.conf import settings

settings.configure(
    USE_TZ=True,
    TIME_ZONE="UTC",
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
)
django.setup()

from django.template import Context, Template, defaulttags  # noqa: E402

request = json.load(sys.stdin)
now = datetime.datetime.fromtimestamp(request["now"], tz=datetime.timezone.utc)


class FixedClock(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return now if tz is not None else now.replace(tzinfo=None)


defaulttags.datetime = FixedClock

results = []
for case in request["cases"]:
    try:
        output = Template(case["template"]).render(Context(case["context"]))
        results.append({"output": output})
    except Exception as e:  # a template Django refuses
        results.append({"error": "%s: %s" % (type(e).__name__, e)})
json.dump(results, sys.stdout)
