"""Trains the models Augur's tests run, exports them to ONNX, and records what ONNX Runtime
computes for a fixed set of feature rows.

    .venv/bin/pip install -r tests/models/requirements.txt
    .venv/bin/python tests/models/train.py

Writes `<name>.onnx` and `expected.json` next to this file. Every model is small (a few KB to a
few hundred KB) so that the files can live in the repository. The expected outputs are computed
by ONNX Runtime in Python, so the tests compare Augur with the runtime data scientists validate
their models with, not with scikit-learn's own (float64) arithmetic.
"""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import (
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
# Loads in every ONNX Runtime since 1.17 (newer default opsets do not).
OPSET = {"": 17, "ai.onnx.ml": 3}
FEATURES = 4

rng = np.random.RandomState(42)


def fraud_data(n):
    """Four features (amount, transactions in the last hour, average amount, account age) and
    a label that depends on them non-linearly."""
    x = np.column_stack(
        [
            rng.gamma(2.0, 50.0, n),
            rng.poisson(3, n),
            rng.gamma(2.0, 40.0, n),
            rng.uniform(0, 1000, n),
        ]
    ).astype(np.float32)
    score = 0.01 * x[:, 0] + 0.5 * x[:, 1] - 0.005 * x[:, 3] + rng.normal(0, 1, n)
    y = (score > np.median(score)).astype(np.int64)
    return x, y


def save(name, model):
    path = os.path.join(HERE, f"{name}.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def export(name, estimator, x, zipmap=True, initial_types=None):
    options = None
    if hasattr(estimator, "predict_proba") and not zipmap:
        options = {id(estimator): {"zipmap": False}}
    if initial_types is None:
        initial_types = [("features", FloatTensorType([None, x.shape[1]]))]
    model = to_onnx(
        estimator, initial_types=initial_types, target_opset=OPSET, options=options
    )
    return save(name, model)


def lookup_model():
    """y = table[int(x)] for a table of 10 values: any x outside 0..9 makes ONNX Runtime fail
    ("indices element out of data bounds"), which the tests use to make one batch fail."""
    table = helper.make_tensor(
        "table", TensorProto.FLOAT, [10], [float(i) * 1.5 for i in range(10)]
    )
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["y"], axis=0),
        ],
        "lookup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return save("lookup", model)


def run(path, feeds):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def classifier_outputs(outputs):
    """(labels, probabilities in class order) of a scikit-learn classifier's outputs."""
    labels = outputs.get("output_label", outputs.get("label"))
    proba = outputs.get("output_probability", outputs.get("probabilities"))
    if isinstance(proba, list):  # ZipMap: one {class: probability} per row
        proba = [[row[c] for c in sorted(row)] for row in proba]
    else:
        proba = proba.tolist()
    labels = [v.item() if hasattr(v, "item") else v for v in labels]
    return labels, proba


def main():
    x, y = fraud_data(2000)
    rows = np.round(fraud_data(50)[0], 3).astype(np.float32)
    expected = {"rows": rows.tolist()}

    classifiers = {
        "logreg": LogisticRegression(max_iter=1000),
        "forest": RandomForestClassifier(n_estimators=10, max_depth=5, random_state=1),
        "gbc": GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=1),
    }
    for name, estimator in classifiers.items():
        estimator.fit(x, y)
        for zipmap in (True, False):
            model = name if zipmap else f"{name}_tensor"
            path = export(model, estimator, x, zipmap=zipmap)
            labels, proba = classifier_outputs(run(path, {"features": rows}))
            expected[model] = {"label": labels, "proba": proba}

    scaled = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]
    ).fit(x, y)
    path = export("pipeline", scaled, x, zipmap=False)
    labels, proba = classifier_outputs(run(path, {"features": rows}))
    expected["pipeline"] = {"label": labels, "proba": proba}

    regressor = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=1)
    regressor.fit(x[:, 1:], x[:, 0])
    path = export("gbr", regressor, x[:, 1:])
    values = run(path, {"features": rows[:, 1:]})["variable"]
    expected["gbr"] = {"value": values[:, 0].tolist()}

    # Three classes with text labels, by the account's age.
    tiers = np.array(["bronze", "gold", "silver"])[
        np.digitize(x[:, 3], [333.0, 666.0])
    ]
    multiclass = LogisticRegression(max_iter=2000).fit(x, tiers)
    path = export("tiers", multiclass, x)
    labels, proba = classifier_outputs(run(path, {"features": rows}))
    expected["tiers"] = {"label": labels, "proba": proba, "classes": sorted(set(tiers))}

    # Several inputs: a float, an integer and a text column, as a ColumnTransformer takes them.
    countries = np.array(["de", "fr", "us"])
    country = countries[rng.randint(0, 3, len(x))]
    inputs = {
        "amount": x[:, :1],
        "txn_count": x[:, 1:2].astype(np.int64),
        "country": country.reshape(-1, 1),
    }
    mixed_y = ((x[:, 0] > 100) ^ (country == "us")).astype(np.int64)
    frame = pd.DataFrame(
        {"amount": x[:, 0], "txn_count": inputs["txn_count"][:, 0], "country": country}
    )
    mixed = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["amount", "txn_count"]),
                        ("cat", OneHotEncoder(), ["country"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, mixed_y)
    path = export(
        "mixed",
        mixed,
        x,
        zipmap=False,
        initial_types=[
            ("amount", FloatTensorType([None, 1])),
            ("txn_count", Int64TensorType([None, 1])),
            ("country", StringTensorType([None, 1])),
        ],
    )
    test_country = countries[np.arange(len(rows)) % 3]
    feeds = {
        "amount": rows[:, :1],
        "txn_count": rows[:, 1:2].astype(np.int64),
        "country": test_country.reshape(-1, 1),
    }
    labels, proba = classifier_outputs(run(path, feeds))
    expected["mixed"] = {
        "label": labels,
        "proba": proba,
        "country": test_country.tolist(),
    }

    # The benchmark's model (benches/predict.rs): 100 trees of depth 3, probabilities as a
    # tensor, as a model exported for serving would be.
    gbc100 = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=1)
    gbc100.fit(x, y)
    path = export("gbc100", gbc100, x, zipmap=False)
    labels, proba = classifier_outputs(run(path, {"features": rows}))
    expected["gbc100"] = {"label": labels, "proba": proba}

    path = lookup_model()
    expected["lookup"] = {
        "value": run(path, {"x": np.array([[2.0], [7.0]], dtype=np.float32)})["y"][
            :, 0
        ].tolist()
    }

    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
