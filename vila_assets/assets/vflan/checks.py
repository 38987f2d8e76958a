"""Checks of the VFLAN family (convention: ``vila_assets.assets._checks``)."""

from vila_assets.assets._checks import Check

# --- flan_1m ------------------------------------------------------------------------------------------------

SAMPLE_SIZE = Check("sample_size", "records == min(sample_size, rows in FLAN)")
FOLDERS_PRESENT = Check("folders_present", "all 14 *_data folders had parts", warn=True)

FLAN_CHECKS = (SAMPLE_SIZE, FOLDERS_PRESENT)

# --- m3it_tasks -----------------------------------------------------------------------------------------------

TASKS_PRESENT = Check("tasks_present", "each of the 14 tasks has records")
INVALID_RECORDS = Check("invalid_records", "share of unusable records <= checks.max_invalid_fraction", warn=True)

M3IT_CHECKS = (TASKS_PRESENT, INVALID_RECORDS)

# --- vflan_chunks ---------------------------------------------------------------------------------------------

RECORD_SCHEMA = Check(
    "record_schema",
    "question/answer str, image list of base64 str, visual-dialog text parses as VILA's loader does",
    blocking=True,
)
# An error; only a partial backfill (chunks absent, none stale or wrong) is reported as a warning.
COUNTS = Check("counts", "every planned part is on disk with the plan's count, built from the current plan")
DUPLICATES = Check(
    "duplicates", "identical (question, answer) pairs and identical records, reported; warns above a share", warn=True
)
LOADER_CONTRACT = Check(
    "loader_contract", "only .pkl/.count pairs in the directory; counts equal the pickles written", blocking=True
)

# vila keeps VILA's parts and reports what is lost; curated lays the chunks out so nothing is
TRAIN_WORLD_SIZE = Check(
    "train_world_size", "every record usable by VILA's sharded loader at data_policy.train_world_size", warn=True
)

CHUNK_CHECKS = (RECORD_SCHEMA, COUNTS, DUPLICATES, LOADER_CONTRACT, TRAIN_WORLD_SIZE)
