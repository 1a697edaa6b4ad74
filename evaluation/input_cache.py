"""The eval watcher's input cache: the split's batches as the input pipeline gives them (decoded
and preprocessed network input, with the ground truth), kept in memory between the evaluations
of one graph so that they are decoded once: by `fill` before the watcher's first evaluation
(the network input does not depend on the weights), or by the first evaluation.

Decoding, resizing and normalising cost 1-2 ms of CPU per image, beside a small net sharing the
cores with training (ssd_300_mobilenet at depth 0.5 on 2 cores: 5.5 ms per image in the net),
and the watcher evaluates the same split for every checkpoint.

The cached batches are the split's first ones, in order, as many as `budget_bytes` holds (the
network input is float32: 1.03 MiB per image at 300x300, 3 MiB at 512x512). Evaluations after
the fill feed them to the net, then read the rest of the split from the records: the cached records are
still read, but not parsed or decoded (`evaluation.input.make_eval_dataset`'s `skip`). The
batches are those of the pipeline, so the detections and metrics are the same as without the
cache.
"""

import os

from evaluation import input as eval_input

MIB = 2**20


def _nbytes(batch):
    """Bytes held by a batch's arrays (string arrays: their strings too)."""
    size = 0
    for value in batch.values():
        if value.dtype == object:
            size += sum(len(item) for item in value.ravel())
        size += value.nbytes
    return size


def _fingerprint(files):
    """(path, inode, size, mtime, ctime) of each record file (ctime: a copy keeping the mtime
    still changes it); None when one cannot be read."""
    stamps = []
    for path in files:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        stamps.append((path, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(stamps)


class InputCache:
    """The first batches of one split, kept by the first evaluation that succeeds.

    Args:
      budget_bytes: memory the cached batches may take (0: no cache; nothing is copied then).
      files: the split's record files; a change of any (replaced, resized, touched) empties
        the cache.
    """

    def __init__(self, budget_bytes, files):
        self.budget_bytes = max(int(budget_bytes), 0)
        self._files = list(files)
        self._batches = []
        self._filled = False  # an evaluation succeeded: the cache holds what it will
        self._complete = False  # the cached batches are the whole split
        self._pending = None  # (batches, complete, stamp) of a read to its end, until commit
        self._batch_bytes = None  # the first batch's size, for the log
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
        return self._filled

    @property
    def complete(self):
        """True when the cache holds the whole split (the input pipeline is not read)."""
        return self._complete

    def check_records(self):
        """Empties the cache when the record files changed since it was filled; returns a line
        saying so when it held images, else None."""
        if not self._filled or _fingerprint(self._files) == self._stamp:
            return None
        dropped = self.num_images
        self._batches, self._filled, self._complete = [], False, False
        if not dropped:
            return None
        return (
            f'[eval] the records changed since the input cache was filled: its {dropped} '
            f'images are dropped and the split is decoded again.'
        )

    def fetch_batches(self, sess, inputs, detections, read_rest=True):
        """Runs the evaluation's batches in `sess`; yields dicts of the ground truth
        (`eval_input.GROUND_TRUTH_KEYS`) and `detections`' values, in the split's order.

        The cached batches come first, each fed to the net whole (every tensor of `inputs`, the
        input iterator's batch: the iterator does not run for them); then the iterator's
        batches, which must start after the cached ones (`num_images` records skipped). Until
        the cache is filled, they are kept while the budget lasts, pending: `commit` takes
        them once the evaluation succeeded (a failed one's are replaced by the next read's).
        `read_rest=False` stops at the first batch over the budget (`fill`).
        """
        ground_truth = eval_input.GROUND_TRUTH_KEYS
        for cached in self._batches:
            out = sess.run(detections, {inputs[key]: cached[key] for key in inputs})
            out.update((key, cached[key]) for key in ground_truth)
            yield out
        if self._complete:
            return
        self._pending = None
        plain = dict(detections, **{key: inputs[key] for key in ground_truth})
        if self._filled or not self.budget_bytes:
            yield from eval_input.session_batches(sess, plain)
            return
        stamp = _fingerprint(self._files)
        kept, size = [], 0
        # The iterator's position lives in the session: after a batch over the budget, the
        # rest is read by a second loop fetching no network input.
        for out in eval_input.session_batches(sess, dict(plain, **inputs)):
            batch = {key: out[key] for key in inputs}
            batch_bytes = _nbytes(batch)
            if self._batch_bytes is None:
                self._batch_bytes = batch_bytes
            size += batch_bytes
            yield {key: out[key] for key in plain}
            if size > self.budget_bytes:
                if read_rest:
                    yield from eval_input.session_batches(sess, plain)
                self._pending = (kept, False, stamp)
                return
            for value in batch.values():
                value.flags.writeable = False  # later evaluations hand them to the metrics
            kept.append(batch)
        self._pending = (kept, True, stamp)

    def fill(self, sess, inputs, total_images):
        """Fills the cache from the input iterator alone, which must start at the split's
        start: the network input does not depend on the weights, so no evaluation is needed
        (the eval watcher calls it before its first evaluation). Reads no further
        than the budget. Returns `commit`'s line; does nothing when the cache is off or filled.
        `total_images`: the images an evaluation covers, for the line."""
        if self._filled or not self.budget_bytes:
            return None
        for _ in self.fetch_batches(sess, inputs, {}, read_rest=False):
            pass
        return self.commit(total_images)

    def commit(self, total_images):
        """Takes the batches an evaluation kept (call it once that evaluation succeeded);
        returns a line saying what the next evaluations reuse, or None when it took nothing
        new. `total_images`: the evaluated images, for the line."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        self._batches, self._complete, self._stamp = pending
        self._filled = True
        budget = f'--input_cache_mb={self.budget_bytes / MIB:g}'
        if not self._batches:
            if self._complete:  # an empty split: nothing to say
                return None
            return (
                f'[eval] input cache: one batch of network input takes '
                f'{self._batch_bytes / MIB:.0f} MiB, more than {budget}; nothing is cached.'
            )
        line = (
            f'[eval] input cache: the next evaluations reuse the decoded input of '
            f'{self.num_images} of {total_images} images ({self.nbytes / MIB:.0f} MiB)'
        )
        if not self._complete:
            need = self.nbytes / self.num_images * total_images / MIB
            line += f'; about {need:.0f} MiB would hold them all ({budget} now)'
        return line + '.'
