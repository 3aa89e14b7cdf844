"""The MLflow pyfunc entry point of an exported policy ("models from code").

MLflow copies this file into every policy model folder and runs it to build the model, so it
imports nothing from rlops: the folder loads and serves (`mlflow.pyfunc.load_model`,
`mlflow models serve`) wherever torch and mlflow are installed. Which artifact holds the
TorchScript actor comes from the model's config, written by `rl_core.policy.policy_model`.
"""

import warnings

import numpy as np
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


class TorchScriptPolicy(PythonModel):
    """Observations (batch, obs_dim) float32 in, deterministic actions (batch, act_dim) out."""

    def load_context(self, context) -> None:
        with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, still works
            warnings.filterwarnings(
                "ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning
            )
            self.actor = torch.jit.load(
                context.artifacts[context.model_config["actor_artifact"]], map_location="cpu"
            )

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        observations = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.inference_mode():
            return self.actor(observations).numpy()


set_model(TorchScriptPolicy())
