"""Full-size training on the real data with MiniLM (`make test-slow`; about 30 + 35 minutes on 2 cores)."""

import pytest

from tests.conftest import CONFIGS, SHARED_DATA
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.pipeline import create_pipeline
from tfx_pipeline.runner import LocalDagRunner

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("config_name, floor", [("banking77", 0.85), ("financial_phrasebank", 0.75)])
def test_full_training_is_blessed_and_pushed(config_name, floor, tmp_path):
    assert SHARED_DATA.is_dir(), f"the real data is expected at {SHARED_DATA} (SUITE_SHARED_DATA)"
    config = PipelineConfig.from_file(CONFIGS / f"{config_name}.yaml", {
        "pipeline_root": str(tmp_path / "root"), "push.model_base_path": str(tmp_path / "models")})
    record = LocalDagRunner().run(create_pipeline(config))
    assert record["metrics"]["accuracy"] >= floor
    assert record["blessed"] and record["pushed_version"] == 1
