"""Data augmentation of a training split: a registry of policies (``AUGMENTATIONS``) and an
ordered pipeline of them.

Policies, one module each in ``study.augment.policies`` (each one's ``make_copies`` docstring
gives its paper and where this code differs; its pydantic model, its parameters and defaults):

- ``eda``: EDA (Wei & Zou 2019), ``policies/eda.py`` (operations in ``operations.py``, WordNet in
  ``wordnet.py``).
- ``mlm``: contextual substitution by a masked LM (Kobayashi 2018; Wu et al. 2019),
  ``policies/mlm.py``.
- ``backtranslation``: a round trip through a pivot language with two translation models
  (Sennrich et al. 2016; Edunov et al. 2018), ``policies/backtranslation.py``.
- ``none``: no copies.

Models load in ``models.py``; parameters are checked by ``params.py``'s types through
``study.core.schema``; copies are cached as JSONL by ``cache.py``; ``pipeline.py`` runs a policy
or a pipeline over a split.

Every policy keeps the originals and appends copies (the copies of example 0, then of example 1,
...); a copy's label is its original's. Pair tasks get each text field augmented independently.
Randomness comes only from the ``seed`` passed in: a ``random.Random``, from which the model-based
policies seed torch inside ``torch.random.fork_rng``; the global generators are left alone.

The API the grid and the data cache call (``value`` is the grid's ``augmentation`` axis value):

- ``resolve_pipeline(value, params_by_name) -> steps``, ``steps = [{"name", "params"}, ...]``;
- ``pipeline_label(steps)`` (``"none"``, ``"eda"``, ``"eda+mlm"``) and ``pipeline_version(steps)``;
- ``augment_pipeline(split, steps, seed, cache_dir, cache_key) -> (split, meta)``;
- ``resolve_params(policy, params)``, ``version(policy)``, ``augment(split, policy, seed, ...)``.

What each step is applied to: step 1 augments the originals, step k > 1 augments the copies step
k - 1 made (chained), as Distiller's ``AutoAugmenter.augment`` feeds each augmenter the previous
one's output (He et al. 2021, "Distiller: A Systematic Study of Model Distillation Methods in
Natural Language Processing"; github.com/Cli212/Distiller, ``src/Distiller/autoaug.py``). Unlike
Distiller, which trains on the originals plus the final chained copies only, the result keeps every
step's copies: ``originals + copies_1 + copies_2 + ...``. With ``n_aug`` = a for step 1 and b for
step 2 there are ``1 + a + a * b`` examples per original.
"""

from study.augment.cache import cache_path, step_cache_path
from study.augment.operations import (
    eda_operations,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from study.augment.pipeline import (
    augment,
    augment_pipeline,
    pipeline_label,
    pipeline_version,
    resolve_pipeline,
)
from study.augment.policy import AUGMENTATIONS, VERSION, Augmentation, resolve_params, version
from study.augment.wordnet import DEBIAN_WORDNET_DIR, open_packaged_wordnet, wordnet_source

__all__ = [
    "AUGMENTATIONS", "Augmentation", "DEBIAN_WORDNET_DIR", "VERSION", "augment", "augment_pipeline",
    "cache_path", "eda_operations", "open_packaged_wordnet", "pipeline_label", "pipeline_version",
    "random_deletion", "random_insertion", "random_swap", "resolve_params", "resolve_pipeline",
    "step_cache_path", "synonym_replacement", "version", "wordnet_source",
]
