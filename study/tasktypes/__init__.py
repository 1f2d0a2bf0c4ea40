"""Task types as plug-ins, one module each, registered by the task YAML's ``task_type``.

| task_type                  | module                         | head (Hugging Face auto class)         |
|----------------------------|--------------------------------|----------------------------------------|
| ``classification``         | ``sequence_classification.py`` | ``AutoModelForSequenceClassification`` |
| ``regression``             | ``sequence_regression.py``     | ``AutoModelForSequenceClassification`` (1 output) |
| ``token_classification``   | ``token_classification.py``    | ``AutoModelForTokenClassification``    |
| ``extractive_qa``          | ``extractive_qa.py``           | ``AutoModelForQuestionAnswering``      |

Yes/no QA (BoolQ) is sequence-pair classification. A new type is one module here (a
``study.tasks.types.TaskType`` registered with ``@register``, and a ``study.tasks.schema.TaskDoc``
model of its YAML keys), its task YAML and its test; ``study.tasks.types.TASK_TYPES`` finds the
module on its first read. Modules named ``_x`` are shared helpers, not types.
"""
