"""Moved to actlab.models.retrieval (the trainers evaluate with it, and trainers sit below analysis);
this name stays importable."""
from ..models.retrieval import *  # noqa: F403
