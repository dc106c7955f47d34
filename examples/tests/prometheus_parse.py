"""Parses a file in the Prometheus text exposition format with prometheus_client.

    python3 prometheus_parse.py METRICS_FILE

Prints one JSON object a line for every sample:
{"name": ..., "labels": {...}, "value": ..., "type": <family type>}. Exits 1 with
the parser's error when the text does not parse.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as metrics:
        text = metrics.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as err:  # the parser raises ValueError and others
        print(f"unparsable exposition: {err!r}", file=sys.stderr)
        return 1
    for family in families:
        for sample in family.samples:
            print(
                json.dumps(
                    {
                        "name": sample.name,
                        "labels": sample.labels,
                        "value": sample.value,
                        "type": family.type,
                    }
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
