"""The LightGBM ranker: a lambdarank model grouped by request and a binary click model,
trained on earlier days with early stopping on a later held-out day, saved in LightGBM's
own text format with a JSON description (features, categoricals, params) and the hash
dictionary it encoded with (Parquet), so serving encodes exactly as training did.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import lightgbm as lgb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_assets.core.hashing import HashEncoder
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking.compiled_trees import CompiledTrees, compile_trees

RANKER_FILE = "lambdarank.txt"
CTR_FILE = "ctr_binary.txt"
META_FILE = "ranker.json"
DICTIONARY_FILE = "hash_dictionary.parquet"

DEFAULT_PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
}


# A request's rows, not a batch's: scored on one thread (and by the compiled trees if any)
SMALL_BATCH_ROWS = 4096


def _threads(rows: int) -> dict:
    """LightGBM's predict settings for `rows` rows: one thread for a request's few hundred
    (rows are scored independently, so the scores are the same; waking an OpenMP team would
    cost more than the trees on a busy machine), its default for a batch."""
    return {"num_threads": 1} if rows <= SMALL_BATCH_ROWS else {}


class RankerMismatchError(RuntimeError):
    pass


@dataclass
class Ranker:
    lambdarank: lgb.Booster
    ctr: lgb.Booster
    encoder: HashEncoder
    dictionary: pa.Table
    meta: dict
    # the lambdarank trees as machine code (the server's, compile_trees()): the same scores
    compiled: CompiledTrees | None = None

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(self.meta["channel_names"])

    @property
    def rank_depth(self) -> int:
        """Depth of the rank_<channel> features it was trained with (serving must use the same)."""
        return int(self.meta.get("rank_depth", 200))

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return F.encode(frame, self.encoder, self.channel_names)

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """lambdarank scores (higher = better) of feature_frame() rows."""
        if frame.height == 0:
            return np.zeros(0, np.float64)
        return self.score_matrix(self.matrix(frame))

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """score() of rows already encoded (feature_names columns, float32)."""
        if not len(matrix):
            return np.zeros(0, np.float64)
        if self.compiled is not None and len(matrix) <= SMALL_BATCH_ROWS:
            return self.compiled.predict(matrix)
        # predict() is typed for sparse input too; a dense matrix gives an ndarray
        return cast(
            np.ndarray,
            self.lambdarank.predict(matrix, num_iteration=self.meta["best_iteration"], **_threads(len(matrix))),
        )

    def compile_trees(self, cache_dir: Path | None) -> None:
        """Score requests with the lambdarank trees compiled to machine code (compiled_trees.py);
        raises when they cannot be (no lleaves, a compiler error), leaving LightGBM's predictor."""
        trees = int(self.meta["best_iteration"]) or self.lambdarank.num_trees()
        self.compiled = compile_trees(self.lambdarank.model_to_string(num_iteration=trees), trees, cache_dir)

    def click_probability(self, frame: pl.DataFrame) -> np.ndarray:
        if frame.height == 0:
            return np.zeros(0, np.float64)
        return cast(np.ndarray, self.ctr.predict(self.matrix(frame), num_iteration=self.meta["ctr_best_iteration"]))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Per-row, per-feature contribution to the lambdarank score (TreeSHAP; last column = bias)."""
        return cast(
            np.ndarray,
            self.lambdarank.predict(
                self.matrix(frame),
                num_iteration=self.meta["best_iteration"],
                pred_contrib=True,
                **_threads(frame.height),
            ),
        )


def _grouped(frame: pl.DataFrame, label: str) -> tuple[pl.DataFrame, np.ndarray]:
    """Rows sorted by request, keeping only requests with both a chosen and a not-chosen item
    (others carry no pairwise signal), and the group sizes."""
    informative = (
        frame.group_by("request_id")
        .agg((pl.col(label).max() > pl.col(label).min()).alias("ok"))
        .filter("ok")
        .select("request_id")
    )
    kept = frame.join(informative, on="request_id", how="semi").sort(
        "request_id", "position", "item_id", nulls_last=True
    )
    sizes = kept.group_by("request_id", maintain_order=True).len()["len"].to_numpy()
    return kept, sizes


def informative_requests(frame: pl.DataFrame, label: str = "label") -> int:
    """Requests with both a chosen and a not-chosen item: the ones a ranker can learn from."""
    if frame.height == 0:
        return 0
    ok = frame.group_by("request_id").agg((pl.col(label).max() > pl.col(label).min()).alias("ok"))["ok"]
    return int(ok.sum())


def split_requests(rows: pl.DataFrame, valid_fraction: float, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, valid) with whole requests on one side. Requests with a time (requested_at) are
    split by time: the latest `valid_fraction` of them validate, as the next day would (a random
    split would validate on requests interleaved with the training ones, within the same
    sessions). Requests without one are chosen by a seeded hash of request_id."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    bucket = (pl.col("request_id").hash(seed=seed) % 10_000) < int(valid_fraction * 10_000)
    if "requested_at" in rows.columns and rows["requested_at"].null_count() < rows.height:
        timed = (
            rows.filter(pl.col("requested_at").is_not_null()).group_by("request_id").agg(pl.col("requested_at").min())
        )
        cut = timed["requested_at"].quantile(1.0 - valid_fraction, interpolation="lower")
        late = (
            rows.filter(pl.col("requested_at").is_not_null())
            .group_by("request_id")
            .agg((pl.col("requested_at").min() > cut).alias("late"))
        )
        rows = rows.join(late, on="request_id", how="left")
        bucket = pl.when(pl.col("late").is_not_null()).then(pl.col("late")).otherwise(bucket)
        return rows.filter(~bucket).drop("late"), rows.filter(bucket).drop("late")
    return rows.filter(~bucket), rows.filter(bucket)


def _shown(rows: pl.DataFrame) -> pl.DataFrame:
    if "kind" in rows.columns:
        shown = rows.filter(pl.col("kind") == "impressions")
        if shown.height:
            return shown
    return rows


def train(
    train_rows: pl.DataFrame,
    valid_rows: pl.DataFrame,
    dictionary: pa.Table,
    channel_names: tuple[str, ...],
    params: dict | None = None,
    num_boost_round: int = 500,
    early_stopping_rounds: int = 30,
    seed: int = 42,
    threads: int = 1,
    rank_depth: int = 200,
    param_grid: list[dict] | None = None,
    refit: bool = False,
) -> Ranker:
    """Fit both models on samples (feature_frame() rows with label, clicked, request_id) whose
    rank_<channel> features are `rank_depth` deep. `param_grid`: other lambdarank settings
    (overrides of `params`) tried too; the best NDCG@10 on `valid_rows` wins (every trial is
    kept in meta["trials"]). `refit`: the validation rows only chose the settings and the number
    of rounds; the final lambdarank learns from train and validation rows together (for a
    validation share cut from the training day, which the model should not lose)."""
    encoder = HashEncoder.from_table(dictionary)
    names = F.feature_names(channel_names)
    categorical = [f"{c}_idx" for c in F.CATEGORICAL]
    base = {
        **DEFAULT_PARAMS,
        **(params or {}),
        "seed": seed,
        "deterministic": True,
        "num_threads": threads,
        "force_col_wise": True,
        "verbosity": -1,
    }

    def dataset(rows: pl.DataFrame, label: np.ndarray, group=None, reference=None) -> lgb.Dataset:
        return lgb.Dataset(
            F.encode(rows, encoder, channel_names),
            label=label,
            group=group,
            feature_name=names,
            categorical_feature=categorical,
            reference=reference,
            free_raw_data=False,
        )

    tr, tr_groups = _grouped(train_rows, "label")
    va, va_groups = _grouped(valid_rows, "label")
    if tr.height == 0 or va.height == 0:
        raise ValueError("no request with both a chosen and a not-chosen item in the training or validation days")
    # The click model estimates P(click | shown): it learns from impression rows when there are any.
    # It does not depend on the lambdarank fits, so it trains on a second thread meanwhile
    # (LightGBM releases the GIL; each model keeps its own num_threads, so both stay bit-identical).
    ctr_train_rows, ctr_valid_rows = _shown(train_rows), _shown(valid_rows)
    ctr_params = base | {"objective": "binary", "metric": ["auc", "binary_logloss"]}

    def train_ctr() -> lgb.Booster:
        ctr_train = dataset(ctr_train_rows, ctr_train_rows["clicked"].cast(pl.Int8).to_numpy())
        ctr_valid = dataset(ctr_valid_rows, ctr_valid_rows["clicked"].cast(pl.Int8).to_numpy(), reference=ctr_train)
        return lgb.train(
            ctr_params,
            ctr_train,
            num_boost_round=num_boost_round,
            valid_sets=[ctr_valid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
        )

    rank_params = base | {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "lambdarank_truncation_level": 20,
    }
    with ThreadPoolExecutor(max_workers=1) as pool:
        ctr_future = pool.submit(train_ctr)
        train_set = dataset(tr, tr["label"].to_numpy(), tr_groups)
        valid_set = dataset(va, va["label"].to_numpy(), va_groups, reference=train_set)
        trials: list[dict] = []
        lambdarank, chosen, best = None, {}, -np.inf
        for overrides in [{}, *(param_grid or [])]:
            candidate = lgb.train(
                rank_params | overrides,
                train_set,
                num_boost_round=num_boost_round,
                valid_sets=[valid_set],
                valid_names=["valid"],
                callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
            )
            score = float(candidate.best_score["valid"]["ndcg@10"])
            trials.append({"params": overrides, "valid_ndcg_at_10": score, "best_iteration": candidate.best_iteration})
            if score > best:  # ties keep the earlier (the defaults first)
                lambdarank, chosen, best = candidate, overrides, score
        assert lambdarank is not None  # the loop runs at least once
        valid_ndcg = float(lambdarank.best_score["valid"]["ndcg@10"])
        best_iteration = int(lambdarank.best_iteration or lambdarank.current_iteration())
        rank_params = rank_params | chosen
        if refit:
            both = pl.concat([tr, va], how="diagonal_relaxed")
            rounds = max(1, round(best_iteration * both["request_id"].n_unique() / max(tr["request_id"].n_unique(), 1)))
            lambdarank = lgb.train(
                rank_params, dataset(both, both["label"].to_numpy(), np.concatenate([tr_groups, va_groups])), rounds
            )
            best_iteration = rounds
        ctr = ctr_future.result()

    meta = {
        "feature_names": names,
        "categorical_features": categorical,
        "channel_names": list(channel_names),
        "rank_depth": int(rank_depth),
        "params": {k: v for k, v in rank_params.items()},
        "ctr_params": ctr_params,
        "best_iteration": best_iteration,
        "trials": trials,
        "refit": refit,
        "ctr_best_iteration": int(ctr.best_iteration or ctr.current_iteration()),
        "valid_ndcg_at_10": valid_ndcg,
        "valid_auc": float(ctr.best_score["valid"]["auc"]),
        "valid_logloss": float(ctr.best_score["valid"]["binary_logloss"]),
        "train_rows": int(train_rows.height),
        "train_requests": int(len(tr_groups)),
        "valid_rows": int(valid_rows.height),
        "valid_requests": int(len(va_groups)),
        "dictionary_version": encoder.version,
        "train_click_rate": float(cast(float, ctr_train_rows["clicked"].cast(pl.Float64).mean())),
    }
    return Ranker(lambdarank=lambdarank, ctr=ctr, encoder=encoder, dictionary=dictionary, meta=meta)


def feature_importance(ranker: Ranker) -> pl.DataFrame:
    """Gain and split importance of both models, one row per (model, feature)."""
    rows = []
    for model_name, booster, it in (
        ("lambdarank", ranker.lambdarank, ranker.meta["best_iteration"]),
        ("ctr_binary", ranker.ctr, ranker.meta["ctr_best_iteration"]),
    ):
        gain = booster.feature_importance("gain", iteration=it)
        split = booster.feature_importance("split", iteration=it)
        total = float(gain.sum()) or 1.0
        for name, g, s in zip(booster.feature_name(), gain, split, strict=False):
            rows.append(
                {
                    "model": model_name,
                    "feature": name,
                    "gain": float(g),
                    "gain_share": float(g) / total,
                    "splits": int(s),
                }
            )
    return pl.DataFrame(rows).sort(["model", "gain"], descending=[False, True])


def save(ranker: Ranker, directory: Path) -> None:
    directory = Path(directory)
    ranker.lambdarank.save_model(directory / RANKER_FILE, num_iteration=ranker.meta["best_iteration"])
    ranker.ctr.save_model(directory / CTR_FILE, num_iteration=ranker.meta["ctr_best_iteration"])
    pq.write_table(ranker.dictionary, directory / DICTIONARY_FILE)
    (directory / META_FILE).write_text(json.dumps(ranker.meta, sort_keys=True, indent=1, default=str))


def load(directory: Path) -> Ranker:
    """Load a saved ranker (text model files, JSON and Parquet only: nothing executes code).
    Raises RankerMismatchError naming the file if the parts do not belong together."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text())
    dictionary = pq.read_table(directory / DICTIONARY_FILE)
    encoder = HashEncoder.from_table(dictionary)
    if encoder.version != meta["dictionary_version"]:
        raise RankerMismatchError(
            f"{directory / DICTIONARY_FILE} has dictionary version {encoder.version}, "
            f"but {meta_path} was trained with {meta['dictionary_version']}"
        )
    lambdarank = lgb.Booster(model_file=str(directory / RANKER_FILE))
    ctr = lgb.Booster(model_file=str(directory / CTR_FILE))
    for path, booster in ((directory / RANKER_FILE, lambdarank), (directory / CTR_FILE, ctr)):
        if booster.feature_name() != meta["feature_names"]:
            raise RankerMismatchError(
                f"{path} has features {booster.feature_name()[:3]}..., not the ones {meta_path} lists"
            )
    # saved with num_iteration=best: every stored tree is used
    meta = meta | {"best_iteration": lambdarank.current_iteration(), "ctr_best_iteration": ctr.current_iteration()}
    return Ranker(lambdarank=lambdarank, ctr=ctr, encoder=encoder, dictionary=dictionary, meta=meta)
