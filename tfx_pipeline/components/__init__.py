"""The pipeline's components, in the order data flows through them."""

from tfx_pipeline.components.evaluator import Evaluator
from tfx_pipeline.components.example_gen import ExampleGen
from tfx_pipeline.components.example_validator import ExampleValidator
from tfx_pipeline.components.hard_negative_miner import HardNegativeMiner
from tfx_pipeline.components.pusher import Pusher
from tfx_pipeline.components.schema_gen import SchemaGen
from tfx_pipeline.components.statistics_gen import StatisticsGen
from tfx_pipeline.components.trainer import Trainer
from tfx_pipeline.components.transform import Transform

__all__ = ["HardNegativeMiner", "ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
           "Evaluator", "Pusher"]
