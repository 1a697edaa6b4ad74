"""The tiny seeded training graph the in-process training tests build: ssd_300_mobilenet at
depth 0.25 on the synthetic records (tests/conftest.synthetic_voc_records), seeded input, plain
SGD at a fixed rate."""

import tensorflow as tf

from datasets import dataset_factory
from model import card as card_lib
from tests.conftest import synthetic_voc_records
from training import model_deploy
from training import trainer

v1 = tf.compat.v1


def tiny_settings(**changes):
    """TrainSettings of the tiny training, with `changes`."""
    base = dict(
        train_dir='unused',
        dataset_dir=str(synthetic_voc_records() / 'records'),
        model_name='ssd_300_mobilenet',
        depth_multiplier=0.25,
        batch_size=2,
        seed=1,
        num_readers=1,
        num_preprocessing_threads=2,
        optimizer='sgd',
        learning_rate=0.01,
        learning_rate_decay_type='fixed',
    )
    return trainer.TrainSettings(**{**base, **changes})


def train_graph(settings, wrap=None):
    """(graph, train op, log tensors, the input `trainer.build_train_op` got) of the tiny
    training; `wrap(iterator, net)`, when given, returns the input to use instead (a recorder of
    what the trainer reads and passes on)."""
    dataset = dataset_factory.get_dataset('pascalvoc_2007', 'train', settings.dataset_dir)
    card = card_lib.from_registry(
        'ssd_300_mobilenet', dataset.num_classes, dataset.class_names, None, 0.25
    )
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(1)
        deploy = model_deploy.DeploymentConfig(settings.num_clones, settings.clone_on_cpu)
        net = trainer.net_card(card, settings).net()
        iterator = trainer.build_input(settings, dataset, net, card.preprocessing(), deploy)
        if wrap is not None:
            iterator = wrap(iterator, net)
        train_op, log_tensors, _ = trainer.build_train_op(
            settings, deploy, net, iterator, dataset.num_samples
        )
    return graph, train_op, log_tensors, iterator
