"""Task types as plug-ins, one module each, registered by the task YAML's ``task_type``.

| task_type                       | module                        | head (Hugging Face auto class)        |
|---------------------------------|-------------------------------|---------------------------------------|
| ``classification``, ``regression`` | ``sequence_classification.py`` | ``AutoModelForSequenceClassification`` |
| ``token_classification``        | ``token_classification.py``   | ``AutoModelForTokenClassification``   |
| ``extractive_qa``               | ``extractive_qa.py``          | ``AutoModelForQuestionAnswering``     |

Yes/no QA (BoolQ) is sequence-pair classification. A new type is one module here and its test;
``base.py`` says what a type brings.
"""

from study.tasks.types import TASK_TYPES, TaskType, get_type, load_all, names, register

__all__ = ["TASK_TYPES", "TaskType", "get_type", "load_all", "names", "register"]
