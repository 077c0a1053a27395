"""Write dynsr/models/model_table.json: every registered model's description, parameters
and FLOPs (256x256 LR), the table `dynsr models` prints without building the models.

    python benchmarks/model_table.py

Run it after adding or changing a model; tests/test_models_table.py checks the table.
"""

from __future__ import annotations

import json

from dynsr.models.complexity import MODEL_TABLE, measure_model_table


def main() -> None:
    MODEL_TABLE.write_text(json.dumps(measure_model_table(), indent=1) + "\n")
    print(f"wrote {MODEL_TABLE}")


if __name__ == "__main__":
    main()
