"""The data augmentation policies, one module each; importing a module registers its policy in
``study.augment.policy.AUGMENTATIONS`` (the registry imports them all on first read), so a new
policy is one new module: its parameter model, its ``make_copies`` and one ``AUGMENTATIONS.add``.
"""
