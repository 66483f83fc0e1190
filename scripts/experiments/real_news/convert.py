"""Quick local conversion of the Globo slice into canonical tables (until the importer lands)."""
import polars as pl
d = pl.read_parquet("../shared/data/globo-g1-dev/clicks.parquet")
print(d.schema, d.height)
d = d.with_row_index("row").with_columns(
    pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String),
    pl.col("ts").dt.cast_time_unit("us").dt.replace_time_zone("UTC") if d.schema["ts"].time_zone is None else pl.col("ts").dt.cast_time_unit("us"),
)
imp = d.select(
    (pl.col("session_id").cast(pl.String) + "-" + pl.col("row").cast(pl.String)).alias("request_id"),
    "user_id", "item_id", "ts", pl.lit(True).alias("clicked"),
)
items = d.group_by("item_id").agg(pl.col("ts").min().alias("published_ts")).sort("item_id")
import os
os.makedirs("runs/globo-src", exist_ok=True)
imp.write_parquet("runs/globo-src/impressions.parquet")
items.write_parquet("runs/globo-src/items.parquet")
print(imp.head(3), items.head(3))
print(d.group_by(pl.col("ts").dt.date()).len().sort("ts"))
