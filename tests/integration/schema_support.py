"""What the schema checks share (test_schemas.sh, api_check.py).

FORMATS: a jsonschema FormatChecker whose "date-time" is RFC 3339 as the
writers promise it, without optional packages. strict_json: JSON as a strict
reader sees it (no NaN/Infinity, no key given twice).
"""
import json
import re

from jsonschema import FormatChecker

FORMATS = FormatChecker()
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$")


@FORMATS.checks("date-time")
def _date_time(value):
    if not isinstance(value, str):
        return True
    m = RFC3339.match(value)
    if not m:
        return False
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    days = [31, 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    ok = 1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h <= 23 and mi <= 59 and s <= 60
    if m.group(9):
        ok = ok and int(m.group(9)) <= 23 and int(m.group(10)) <= 59
    return ok


def strict_json(text):
    """JSON as a strict reader sees it: no NaN/Infinity, no key given twice."""
    def pairs(items):
        obj = {}
        for k, v in items:
            if k in obj:
                raise ValueError("the key %r is given twice" % k)
            obj[k] = v
        return obj

    def constant(c):
        raise ValueError("%s is not JSON" % c)
    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
