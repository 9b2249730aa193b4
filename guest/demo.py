"""The computation the demo, the end-to-end test, the benchmarks and the run tests send: a sum over two CSVs.

`run_body()` is a POST /run body (dict, JSON-ready) declaring one algorithm slot (sum.py) and two dataset slots
(a.csv, b.csv); SUM_ALGORITHM is the Python source the reference agent runs as `python3 sum.py a.csv b.csv`, which
writes each dataset's sum and then the total to $RESULT_PATH; on DATASET_A and DATASET_B the result is EXPECTED.
Standard library only: the agent's tests import it without libvirt.
"""
from __future__ import annotations

# Writes each dataset's sum and then the total to RESULT_PATH, as "15,60=75".
SUM_ALGORITHM = b"""import csv, os, sys
sums = []
for path in sys.argv[1:]:
    with open(path, newline="") as handle:
        sums.append(sum(int(cell) for row in csv.reader(handle) for cell in row if cell.strip()))
with open(os.environ["RESULT_PATH"], "w") as result:
    result.write(",".join(map(str, sums)) + "=" + str(sum(sums)))
"""

DATASET_A = b"1,2,3\n4,5\n"  # 15
DATASET_B = b"10,20\n30\n"  # 60
EXPECTED = b"15,60=75"


def run_body(name: str = "sum", ttl: int = 30, **extra: object) -> dict:
    """A POST /run body the reference agent accepts: one algorithm slot, two dataset slots; `ttl` in seconds;
    `extra` keys are added or override (e.g. domain="NAME" to have the manager locate the agent in that domain)."""
    return {"name": name, "description": "sum over two CSVs", "owner": "alice", "datasets": ["a.csv", "b.csv"],
            "algorithms": ["sum.py"], "dataset_providers": ["bob"], "algorithm_providers": ["alice"],
            "result_consumers": ["alice"], "ttl": ttl, **extra}
