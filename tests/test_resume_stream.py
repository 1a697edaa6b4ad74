"""A seeded training resumed at step s reads a stream of its own (trainer.input_seed): it started
again from the seed's first batches, so a run preempted again and again trained on them at every
resume (the same losses as step 1 at a resumed step, with a tiny learning rate)."""

import hashlib

import numpy as np
import tensorflow as tf

from datasets import dataset_factory
from model import card as card_lib
from tests import train_fixtures
from training import model_deploy
from training import trainer

v1 = tf.compat.v1


def test_input_seed_of_fresh_runs_workers_and_resumes():
    assert trainer.input_seed(None, 3, 100) is None
    assert trainer.input_seed(7) == trainer.input_seed(7, 0, 0) == 7  # a resume at step 0: fresh
    assert trainer.input_seed(7, 2) == 7 + 2 * 1000003
    # Resumed: the first 8 bytes of sha256('<seed>:<step>'), as a non-negative int64.
    expected = int(hashlib.sha256(b'2000013:40').hexdigest()[:16], 16) // 2
    assert trainer.input_seed(7, 2, 40) == expected
    seeds = {trainer.input_seed(-5, 0, step) for step in range(1, 200)}
    assert len(seeds) == 199 and all(0 <= s < 2**63 for s in seeds)


def _first_batches(resume_step, count=2):
    """The first `count` batches (images and matched classes) of the tiny training's stream."""
    settings = train_fixtures.tiny_settings()
    dataset = dataset_factory.get_dataset('pascalvoc_2007', 'train', settings.dataset_dir)
    card = card_lib.from_registry(
        'ssd_300_mobilenet', dataset.num_classes, dataset.class_names, None, 0.25
    )
    with tf.Graph().as_default():
        deploy = model_deploy.DeploymentConfig(1, False)
        iterator = trainer.build_input(
            settings,
            dataset,
            trainer.net_card(card, settings).net(),
            card.preprocessing(),
            deploy,
            resume_step=resume_step,
        )
        batch = iterator.get_next()
        with v1.Session() as sess:
            return [sess.run([batch['image'], batch['gclasses']]) for _ in range(count)]


def test_a_resumed_stream_is_its_own_and_reproducible():
    fresh = _first_batches(None)
    resumed = _first_batches(30)
    again = _first_batches(30)
    for (image, classes), (image_again, classes_again) in zip(resumed, again):
        np.testing.assert_array_equal(image, image_again)
        np.testing.assert_array_equal(classes, classes_again)
    for (image, _), (fresh_image, _) in zip(resumed, fresh):
        assert not np.array_equal(image, fresh_image)
    np.testing.assert_array_equal(_first_batches(0)[0][0], fresh[0][0])
