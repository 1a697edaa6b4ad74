"""The eval watcher's input cache: the split's batches as the input pipeline gives them (decoded
and preprocessed network input, with the ground truth), kept in memory between the evaluations
of one graph so that only the first evaluation decodes them.

Decoding, resizing and normalising cost 1-2 ms of CPU per image; beside a small net sharing the
cores with training they are a fifth of every evaluation (ssd_300_mobilenet at depth 0.5 on 2
cores: 5.5 ms per image in the net). The watcher evaluates the same split for every checkpoint.

The cached batches are the split's first ones, in order, as many as `budget_bytes` holds (the
network input is float32: about 1.1 MB per image at 300x300, 3.1 MB at 512x512). Later
evaluations feed them to the net, then read the rest of the split from the records, leaving the
cached records out undecoded (`evaluation.input.make_eval_dataset`'s `skip`). The batches are
those of the pipeline, so the detections and metrics are the same as without the cache.
"""

import os


from evaluation import input as eval_input

# What a cached batch adds to the ground truth the metrics read.
NETWORK_INPUT_KEYS = ('image', 'bbox_img')


def _nbytes(batch):
    """Bytes held by a batch's arrays (string arrays: their strings)."""
    size = 0
    for value in batch.values():
        if value.dtype == object:
            size += sum(len(item) for item in value.ravel()) + value.nbytes
        else:
            size += value.nbytes
    return size


def _fingerprint(files):
    """(path, size, mtime) of each record file; None for a file that cannot be read."""
    stamps = []
    for path in files:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        stamps.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


class InputCache:
    """The first batches of one split, filled by the first evaluation that reads it whole.

    Args:
      budget_bytes: memory the cached batches may take (0: no cache; nothing is copied then).
      files: the split's record files; a change of their size or time empties the cache.
    """

    def __init__(self, budget_bytes, files):
        self.budget_bytes = max(int(budget_bytes), 0)
        self._files = list(files)
        self._batches = []
        self._filled = False  # an evaluation read the split whole: the cache is final
        self._complete = False  # the cached batches are the whole split
        self._per_image = None  # bytes of one cached image, from the first batch read
        self._stamp = None

    @property
    def num_images(self):
        """Images in the cached batches (a multiple of the batch size unless the whole split
        is cached)."""
        return sum(len(batch['num_gt']) for batch in self._batches)

    @property
    def nbytes(self):
        return sum(_nbytes(batch) for batch in self._batches)

    @property
    def filled(self):
        """True once an evaluation read the split whole (the cache holds what it will)."""
        return self._filled

    @property
    def complete(self):
        """True when the cache holds the whole split (the input pipeline is not read)."""
        return self._complete

    def check_records(self):
        """Empties the cache when the record files changed since it was filled; returns a line
        saying so, else None."""
        if not self._filled or _fingerprint(self._files) == self._stamp:
            return None
        dropped = self.num_images
        self._batches, self._filled, self._complete = [], False, False
        return (
            f'[eval] the records changed since the input cache was filled: its {dropped} '
            f'images are dropped and the split is decoded again.'
        )

    def describe(self, total_images):
        """One line on what the next evaluations reuse, or None without a filled cache."""
        if not self._filled or not self.budget_bytes:
            return None
        line = (
            f'[eval] input cache: the next evaluations reuse the decoded input of '
            f'{self.num_images} of {total_images} images ({self.nbytes / 2**20:.0f} MB of '
            f'{self.budget_bytes / 2**20:.0f} MB)'
        )
        if not self._complete and self._per_image:
            need = self._per_image * total_images / 2**20
            line += f'; about {need:.0f} MB would hold them all (--input_cache_mb)'
        return line + '.'

    def batches(self, sess, inputs, detections):
        """The fetched batches of one evaluation, in order: dicts of the ground truth
        (`eval_input.GROUND_TRUTH_KEYS`) and `detections`' values.

        The cached batches come first, each fed to the net whole (every tensor of `inputs`, the
        input iterator's batch: the iterator does not run for them); then the iterator's
        batches, which must start after the cached ones (`num_images` records skipped). Until
        the cache is filled, they are kept while the budget lasts; the cache takes them when
        the iterator ends, not when the evaluation stops early.
        """
        ground_truth = eval_input.GROUND_TRUTH_KEYS
        for cached in self._batches:
            out = sess.run(detections, {inputs[key]: cached[key] for key in inputs})
            out.update((key, cached[key]) for key in ground_truth)
            yield out
        if self._complete:
            return
        filling = not self._filled and self.budget_bytes > 0
        fetches = dict(detections)
        fetches.update((key, inputs[key]) for key in (inputs if filling else ground_truth))
        stamp = _fingerprint(self._files) if filling else None
        kept, size, complete = [], 0, True
        for out in eval_input.session_batches(sess, fetches):
            if filling:
                batch = {key: out[key] for key in inputs}
                for key in NETWORK_INPUT_KEYS:
                    del out[key]
                for value in batch.values():
                    value.flags.writeable = False  # the metrics get these arrays again
                if self._per_image is None:
                    self._per_image = _nbytes(batch) / max(len(batch['num_gt']), 1)
                size += _nbytes(batch)
                complete = complete and size <= self.budget_bytes
                if complete:
                    kept.append(batch)
            yield out
        if filling:
            self._stamp = stamp
            self._batches, self._filled, self._complete = kept, True, complete
