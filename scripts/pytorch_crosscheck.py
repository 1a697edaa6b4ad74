"""Cross-check of the PyTorch converter against PyTorch itself: writes tests/fixtures/pytorch/.

Needs torch, torchvision and scikit-image, in an environment of their own (they are not the
project's requirements):

  python3 -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install torch torchvision scikit-image
  /tmp/torchenv/bin/python scripts/pytorch_crosscheck.py            # writes the fixtures
  /tmp/torchenv/bin/python scripts/pytorch_crosscheck.py --measure  # head input RMS only

What it does:
1. Photos: three of scikit-image's bundled photographs (skimage.data astronaut, coffee,
   chelsea), resized to 300x300 (PIL bilinear) -> photos/<name>.png. At 300x300 both sources'
   own resizing is the identity (checked), so the tests feed the same pixels.
2. The source networks with the seeded weights of tests/pytorch_fixtures.py:
   - torchvision's `ssd300_vgg16(num_classes=91)` (the real class, from the installed
     torchvision), run through its own transform, head, anchor generator and postprocess;
   - ssd.pytorch's SSD300 (`build_ssd('test', 300, 21)`), transcribed below from
     amdegroot/ssd.pytorch (ssd.py, layers/functions/prior_box.py, detection.py,
     layers/box_utils.py: decode and nms), since it is not pip-installable.
   Stored per photo: the box codes of every anchor, background and best-foreground
   probabilities (and the best class) of every anchor, the class logits of every 8th anchor, and
   the final detections; plus the anchors each source uses.
3. Reader fixtures (reader/): small real `.pth` files written by torch.save in the zip and the
   legacy format, float32 and float16 (and bfloat16, int64, a transposed and an offset view, an
   nn.Parameter, a nested checkpoint dict), a hand-made 2017-style legacy file
   (`_rebuild_tensor`, storages tagged 'cuda:0', as ssd.pytorch's published weights were saved)
   that torch.load reads, and expected.npz with what torch.load gives for each.
4. Checks that tests/pytorch_fixtures.write_pth writes files torch.load reads back exactly.
5. meta.json: versions, seeds, per-tensor checksums of the state_dicts, statistics.
"""

import argparse
import collections
import json
import math
import os
import sys
from itertools import product

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests import pytorch_fixtures as fx  # noqa: E402  (pure numpy)

SUBSET_STEP = 8  # class logits of every 8th anchor are stored


# ---------------------------------------------------------------------------------------------
# ssd.pytorch (amdegroot/ssd.pytorch), transcribed: same module structure, so the same
# state_dict keys, and the same forward, priors and detection.

SSD_PYTORCH_VOC = {
    'feature_maps': [38, 19, 10, 5, 3, 1],
    'min_dim': 300,
    'steps': [8, 16, 32, 64, 100, 300],
    'min_sizes': [30, 60, 111, 162, 213, 264],
    'max_sizes': [60, 111, 162, 213, 264, 315],
    'aspect_ratios': [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    'variance': [0.1, 0.2],
    'clip': True,
}


def ssd_pytorch_vgg(cfg, i):
    layers = []
    in_channels = i
    for v in cfg:
        if v == 'M':
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        elif v == 'C':
            layers += [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
    conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
    conv7 = nn.Conv2d(1024, 1024, kernel_size=1)
    layers += [pool5, conv6, nn.ReLU(inplace=True), conv7, nn.ReLU(inplace=True)]
    return layers


def ssd_pytorch_extras(cfg, i):
    layers = []
    in_channels = i
    flag = False
    for k, v in enumerate(cfg):
        if in_channels != 'S':
            if v == 'S':
                layers += [
                    nn.Conv2d(
                        in_channels, cfg[k + 1], kernel_size=(1, 3)[flag], stride=2, padding=1
                    )
                ]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=(1, 3)[flag])]
            flag = not flag
        in_channels = v
    return layers


def ssd_pytorch_multibox(vgg, extra_layers, cfg, num_classes):
    loc_layers, conf_layers = [], []
    for k, v in enumerate([21, -2]):
        loc_layers += [nn.Conv2d(vgg[v].out_channels, cfg[k] * 4, kernel_size=3, padding=1)]
        conf_layers += [
            nn.Conv2d(vgg[v].out_channels, cfg[k] * num_classes, kernel_size=3, padding=1)
        ]
    for k, v in enumerate(extra_layers[1::2], 2):
        loc_layers += [nn.Conv2d(v.out_channels, cfg[k] * 4, kernel_size=3, padding=1)]
        conf_layers += [nn.Conv2d(v.out_channels, cfg[k] * num_classes, kernel_size=3, padding=1)]
    return vgg, extra_layers, (loc_layers, conf_layers)


class L2Norm(nn.Module):
    def __init__(self, n_channels, scale):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((n_channels,), float(scale)))

    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight.view(1, -1, 1, 1) * torch.div(x, norm)


def ssd_pytorch_priors(cfg):
    mean = []
    for k, f in enumerate(cfg['feature_maps']):
        for i, j in product(range(f), repeat=2):
            f_k = cfg['min_dim'] / cfg['steps'][k]
            cx = (j + 0.5) / f_k
            cy = (i + 0.5) / f_k
            s_k = cfg['min_sizes'][k] / cfg['min_dim']
            mean += [cx, cy, s_k, s_k]
            s_k_prime = math.sqrt(s_k * (cfg['max_sizes'][k] / cfg['min_dim']))
            mean += [cx, cy, s_k_prime, s_k_prime]
            for ar in cfg['aspect_ratios'][k]:
                mean += [cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)]
                mean += [cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)]
    output = torch.Tensor(mean).view(-1, 4)
    if cfg['clip']:
        output.clamp_(max=1, min=0)
    return output


def ssd_pytorch_decode(loc, priors, variances):
    boxes = torch.cat(
        (
            priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:],
            priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1]),
        ),
        1,
    )
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def ssd_pytorch_nms(boxes, scores, overlap=0.5, top_k=200):
    keep = scores.new(scores.size(0)).zero_().long()
    if boxes.numel() == 0:
        return keep, 0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = torch.mul(x2 - x1, y2 - y1)
    v, idx = scores.sort(0)  # ascending
    idx = idx[-top_k:]
    count = 0
    while idx.numel() > 0:
        i = idx[-1]
        keep[count] = i
        count += 1
        if idx.size(0) == 1:
            break
        idx = idx[:-1]
        xx1 = torch.clamp(torch.index_select(x1, 0, idx), min=float(x1[i]))
        yy1 = torch.clamp(torch.index_select(y1, 0, idx), min=float(y1[i]))
        xx2 = torch.clamp(torch.index_select(x2, 0, idx), max=float(x2[i]))
        yy2 = torch.clamp(torch.index_select(y2, 0, idx), max=float(y2[i]))
        w = torch.clamp(xx2 - xx1, min=0.0)
        h = torch.clamp(yy2 - yy1, min=0.0)
        inter = w * h
        rem_areas = torch.index_select(area, 0, idx)
        union = (rem_areas - inter) + area[i]
        iou = inter / union
        idx = idx[iou.le(overlap)]
    return keep, count


def ssd_pytorch_detect(
    loc_data,
    conf_data,
    prior_data,
    num_classes,
    top_k=200,
    conf_thresh=0.01,
    nms_thresh=0.45,
    variance=(0.1, 0.2),
):
    num = loc_data.size(0)
    num_priors = prior_data.size(0)
    output = torch.zeros(num, num_classes, top_k, 5)
    conf_preds = conf_data.view(num, num_priors, num_classes).transpose(2, 1)
    for i in range(num):
        decoded_boxes = ssd_pytorch_decode(loc_data[i], prior_data, variance)
        conf_scores = conf_preds[i].clone()
        for cl in range(1, num_classes):
            c_mask = conf_scores[cl].gt(conf_thresh)
            scores = conf_scores[cl][c_mask]
            if scores.size(0) == 0:
                continue
            l_mask = c_mask.unsqueeze(1).expand_as(decoded_boxes)
            boxes = decoded_boxes[l_mask].view(-1, 4)
            ids, count = ssd_pytorch_nms(boxes, scores, nms_thresh, top_k)
            output[i, cl, :count] = torch.cat(
                (scores[ids[:count]].unsqueeze(1), boxes[ids[:count]]), 1
            )
    flt = output.contiguous().view(num, -1, 5)
    _, idx = flt[:, :, 0].sort(1, descending=True)
    _, rank = idx.sort(1)
    # As published: boolean-mask indexing makes a copy, so this per-image top_k never changes
    # `output` (every class keeps up to top_k detections). Kept to run what users ran.
    flt[(rank < top_k).unsqueeze(-1).expand_as(flt)].fill_(0)
    return output


class SSDPyTorch(nn.Module):
    """ssd.pytorch's SSD ('test' phase) for 300x300 inputs."""

    def __init__(self, num_classes=21):
        super().__init__()
        base = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'C', 512, 512, 512, 'M', 512, 512, 512]
        extras = [256, 'S', 512, 128, 'S', 256, 128, 256, 128, 256]
        vgg, extra, head = ssd_pytorch_multibox(
            ssd_pytorch_vgg(base, 3),
            ssd_pytorch_extras(extras, 1024),
            [4, 6, 6, 6, 4, 4],
            num_classes,
        )
        self.num_classes = num_classes
        self.priors = ssd_pytorch_priors(SSD_PYTORCH_VOC)
        self.vgg = nn.ModuleList(vgg)
        self.L2Norm = L2Norm(512, 20)
        self.extras = nn.ModuleList(extra)
        self.loc = nn.ModuleList(head[0])
        self.conf = nn.ModuleList(head[1])

    def sources(self, x):
        sources = []
        for k in range(23):
            x = self.vgg[k](x)
        sources.append(self.L2Norm(x))
        for k in range(23, len(self.vgg)):
            x = self.vgg[k](x)
        sources.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        return sources

    def forward(self, x):
        loc, conf = [], []
        for s, l, c in zip(self.sources(x), self.loc, self.conf):
            loc.append(l(s).permute(0, 2, 3, 1).contiguous())
            conf.append(c(s).permute(0, 2, 3, 1).contiguous())
        loc = torch.cat([o.view(o.size(0), -1) for o in loc], 1).view(x.size(0), -1, 4)
        conf = torch.cat([o.view(o.size(0), -1) for o in conf], 1).view(
            x.size(0), -1, self.num_classes
        )
        return loc, conf


def ssd_pytorch_input(rgb):
    """ssd.pytorch's eval input: cv2 BGR image, resize to 300, minus MEANS (104, 117, 123),
    then `[:, :, (2, 1, 0)]` to RGB -> float32 NCHW."""
    bgr = rgb[:, :, ::-1].astype(np.float32)
    x = bgr - np.array((104.0, 117.0, 123.0), np.float32)
    x = x[:, :, (2, 1, 0)]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------


def to_torch(state_dict):
    return collections.OrderedDict(
        (k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in state_dict.items()
    )


def photos(write):
    import skimage.data

    out = []
    for name in fx.PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)()).convert('RGB')
        image = image.resize((300, 300), Image.BILINEAR)
        if write:
            os.makedirs(fx.PHOTO_DIR, exist_ok=True)
            image.save(os.path.join(fx.PHOTO_DIR, name + '.png'), optimize=True)
        out.append((name, np.asarray(image)))
    return out


def rms(t):
    return float(t.double().pow(2).mean().sqrt())


def anchor_outputs(logits, codes):
    """Per image: what the fixture keeps of [A, C] logits and [A, 4] codes."""
    probs = torch.softmax(logits, dim=-1)
    fg, fg_class = probs[:, 1:].max(dim=-1)
    return {
        'codes': codes.numpy(),
        'prob_background': probs[:, 0].numpy(),
        'prob_best_foreground': fg.numpy(),
        'best_foreground_class': (fg_class + 1).numpy().astype(np.int16),
        'logits_subset': logits[::SUBSET_STEP].numpy(),
    }


def run_torchvision(images, measure):
    sd = fx.torchvision_ssd300(fx.SEED)
    model = torchvision.models.detection.ssd300_vgg16(
        weights=None, weights_backbone=None, num_classes=91
    )
    model.load_state_dict(to_torch(sd), strict=True)
    model.eval()
    captured = {}
    model.backbone.register_forward_hook(
        lambda m, i, o: captured.update(
            backbone_in=i[0].detach().clone(), features=[v.detach() for v in o.values()]
        )
    )
    model.head.register_forward_hook(
        lambda m, i, o: captured.update(head={k: v.detach().clone() for k, v in o.items()})
    )
    model.anchor_generator.register_forward_hook(
        lambda m, i, o: captured.update(anchors=[a.detach().clone() for a in o])
    )
    inputs = [torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 for _, img in images]
    with torch.no_grad():
        detections = model(inputs)
    if measure:
        return [rms(f) for f in captured['features']]
    # The transform's output is the normalised 300x300 input: the resize must be the identity.
    mean = torch.tensor(model.transform.image_mean)[:, None, None]
    std = torch.tensor(model.transform.image_std)[:, None, None]
    manual = torch.stack([(x - mean) / std for x in inputs])
    transform_diff = float((captured['backbone_in'] - manual).abs().max())
    out = {'anchors_xyxy_pixels': captured['anchors'][0].numpy()}
    stats = {'transform_vs_normalise_max_abs_diff': transform_diff, 'detections': []}
    for b, (name, _) in enumerate(images):
        for key, value in anchor_outputs(
            captured['head']['cls_logits'][b], captured['head']['bbox_regression'][b]
        ).items():
            out['%s/%s' % (name, key)] = value
        det = detections[b]
        out['%s/det_boxes_xyxy_pixels' % name] = det['boxes'].numpy()
        out['%s/det_scores' % name] = det['scores'].numpy()
        out['%s/det_labels' % name] = det['labels'].numpy().astype(np.int16)
        stats['detections'].append(int(det['scores'].numel()))
    stats['feature_rms'] = [rms(f) for f in captured['features']]
    stats['settings'] = {
        'image_mean': model.transform.image_mean,
        'image_std': model.transform.image_std,
        'box_coder_weights': list(model.box_coder.weights),
        'bbox_xform_clip': model.box_coder.bbox_xform_clip,
        'score_thresh': model.score_thresh,
        'nms_thresh': model.nms_thresh,
        'detections_per_img': model.detections_per_img,
        'topk_candidates': model.topk_candidates,
        'anchor_generator': repr(model.anchor_generator),
    }
    return out, stats, sd


def run_ssd_pytorch(images, measure):
    sd = fx.ssd_pytorch_ssd300(fx.SEED)
    model = SSDPyTorch(21)
    model.load_state_dict(to_torch(sd), strict=True)
    model.eval()
    x = torch.stack([ssd_pytorch_input(img) for _, img in images])
    with torch.no_grad():
        if measure:
            return [rms(s) for s in model.sources(x)]
        sources = model.sources(x)
        loc, conf = model(x)
        output = ssd_pytorch_detect(loc, F.softmax(conf, dim=-1), model.priors, 21)
    out = {'priors_cxcywh': model.priors.numpy()}
    stats = {'detections': [], 'feature_rms': [rms(s) for s in sources]}
    for b, (name, _) in enumerate(images):
        for key, value in anchor_outputs(conf[b], loc[b]).items():
            out['%s/%s' % (name, key)] = value
        rows = output[b]  # [21, 200, 5]: score, x1, y1, x2, y2 (relative)
        labels, slots = torch.nonzero(rows[:, :, 0] > 0, as_tuple=True)
        out['%s/det_scores' % name] = rows[labels, slots, 0].numpy()
        out['%s/det_boxes_xyxy_relative' % name] = rows[labels, slots, 1:].numpy()
        out['%s/det_labels' % name] = labels.numpy().astype(np.int16)
        stats['detections'].append(int(labels.numel()))
    return out, stats, sd


# ---------------------------------------------------------------------------------------------
# Reader fixtures.


def reader_fixtures():
    os.makedirs(fx.READER_DIR, exist_ok=True)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    sd = net.state_dict()  # OrderedDict with _metadata; num_batches_tracked is int64
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7.0
    mixed = collections.OrderedDict(
        [
            ('half', torch.linspace(-2, 2, 10).half()),
            ('bfloat16', torch.tensor([1.5, -2.25, 3.0e3], dtype=torch.bfloat16)),
            ('transposed', base.t()),  # non-contiguous: stride (1, 6)
            ('offset_view', base.view(-1)[5:17]),  # shares the storage at offset 5
            ('same_storage', base),
            ('scalar', torch.tensor(3.25)),
            ('parameter', nn.Parameter(torch.ones(2, 2) * 0.5)),
        ]
    )
    checkpoint = {
        'model': sd,
        'epoch': 7,
        'best_map': 0.7743,
        'classes': ['bg', 'cat'],
        'nested': (1, 2.5, None, True),
    }
    files = {
        'zip_state_dict.pth': (sd, True),
        'zip_float16.pth': (
            collections.OrderedDict(
                (k, v.half() if v.is_floating_point() else v) for k, v in sd.items()
            ),
            True,
        ),
        'zip_mixed.pth': (mixed, True),
        'zip_checkpoint.pth': (checkpoint, True),
        'legacy_state_dict.pth': (sd, False),
        'legacy_float16.pth': (
            collections.OrderedDict(
                (k, v.half() if v.is_floating_point() else v) for k, v in sd.items()
            ),
            False,
        ),
        'legacy_mixed.pth': (mixed, False),
    }
    expected = {}
    for name, (obj, use_zip) in files.items():
        path = os.path.join(fx.READER_DIR, name)
        torch.save(obj, path, _use_new_zipfile_serialization=use_zip)
        loaded = torch.load(path, map_location='cpu', weights_only=True)
        state = loaded['model'] if 'model' in loaded else loaded
        for key, value in state.items():
            value = value.detach()
            expected['%s/%s' % (name, key)] = (
                value.float() if value.dtype == torch.bfloat16 else value
            ).numpy()
    # 2017 style: _rebuild_tensor (no requires_grad / hooks), GPU location tag, protocol 2.
    legacy_v1 = os.path.join(fx.READER_DIR, 'legacy_v1_cuda.pth')
    old = collections.OrderedDict(
        [
            ('vgg.0.weight', torch.randn(4, 3, 3, 3)),
            ('vgg.0.bias', torch.randn(4)),
            ('L2Norm.weight', torch.full((4,), 20.0)),
        ]
    )
    write_2017_style(old, legacy_v1)
    loaded = torch.load(legacy_v1, map_location='cpu', weights_only=False)  # our own file
    for key, value in loaded.items():
        assert torch.equal(value, old[key]), key
        expected['legacy_v1_cuda.pth/%s' % key] = value.numpy()
    np.savez_compressed(os.path.join(fx.READER_DIR, 'expected.npz'), **expected)
    return sorted(files) + ['legacy_v1_cuda.pth']


def write_2017_style(state_dict, path):
    """The legacy format as PyTorch 0.2/0.3 wrote it for a GPU-trained state_dict."""
    import pickle
    import struct

    class Rebuild:
        def __init__(self, key, tensor):
            self.key, self.tensor = key, tensor

        def __reduce__(self):
            t = self.tensor
            return (
                torch._utils._rebuild_tensor,
                (StorageRef(self.key, t.numel()), 0, tuple(t.shape), tuple(t.stride())),
            )

    class StorageRef:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                return ('storage', torch.FloatStorage, obj.key, 'cuda:0', obj.numel, None)
            return None

    keys = [str(100000 + i) for i in range(len(state_dict))]
    with open(path, 'wb') as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump(
            {
                'protocol_version': 1001,
                'little_endian': True,
                'type_sizes': {'short': 2, 'int': 4, 'long': 8},
            },
            f,
            protocol=2,
        )
        P(f, protocol=2).dump(
            collections.OrderedDict(
                (name, Rebuild(key, t)) for key, (name, t) in zip(keys, state_dict.items())
            )
        )
        pickle.dump(keys, f, protocol=2)
        for t in state_dict.values():
            f.write(struct.pack('<q', t.numel()))
            f.write(t.contiguous().numpy().astype('<f4').tobytes())


def check_writer(tmp_dir):
    """tests/pytorch_fixtures.write_pth must write what torch.load reads back exactly."""
    rng = np.random.default_rng(0)
    sd = collections.OrderedDict(
        [
            ('a.weight', rng.standard_normal((3, 2, 3, 3), np.float32)),
            ('a.bias', rng.standard_normal(3, np.float32)),
            ('h', rng.standard_normal(5).astype(np.float16)),
            ('n', np.array(7, np.int64)),
        ]
    )
    results = {}
    for legacy in (False, True):
        path = os.path.join(tmp_dir, 'writer_%s.pth' % ('legacy' if legacy else 'zip'))
        fx.write_pth(sd, path, legacy=legacy, location='cuda:0' if legacy else 'cpu')
        loaded = torch.load(path, map_location='cpu', weights_only=True)
        ok = list(loaded) == list(sd) and all(
            np.array_equal(loaded[k].numpy(), v) and loaded[k].numpy().dtype == v.dtype
            for k, v in sd.items()
        )
        assert ok, 'write_pth (legacy=%s) does not round-trip through torch.load' % legacy
        results['legacy' if legacy else 'zip'] = ok
        os.remove(path)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--measure',
        action='store_true',
        help='print the RMS of each head input and stop (to set HEAD_INPUT_RMS)',
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    images = photos(write=not args.measure)
    if args.measure:
        print('torchvision head inputs RMS:', run_torchvision(images, True))
        print('ssd.pytorch head inputs RMS:', run_ssd_pytorch(images, True))
        return
    meta = {
        'torch': torch.__version__,
        'torchvision': torchvision.__version__,
        'numpy': np.__version__,
        'seed': fx.SEED,
        'photos': {
            'source': 'skimage.data (scikit-image bundled photographs), resized to '
            '300x300 with PIL bilinear',
            'names': list(fx.PHOTOS),
        },
        'subset_step': SUBSET_STEP,
        'sources': {},
    }
    for source, run in (
        ('torchvision_ssd300', run_torchvision),
        ('ssd_pytorch_ssd300', run_ssd_pytorch),
    ):
        out, stats, sd = run(images, False)
        np.savez_compressed(os.path.join(fx.FIXTURE_DIR, source + '_outputs.npz'), **out)
        stats['checksums'] = fx.checksums(sd)
        meta['sources'][source] = stats
        print(
            source,
            'detections per photo:',
            stats['detections'],
            'feature RMS:',
            ['%.3g' % r for r in stats['feature_rms']],
        )
    for source in ('ssd_pytorch_vgg', 'torchvision_vgg_features'):
        meta['sources'][source] = {'checksums': fx.checksums(fx.SOURCES[source](fx.SEED))}
    meta['reader_files'] = reader_fixtures()
    meta['write_pth_roundtrip'] = check_writer(fx.FIXTURE_DIR)
    with open(fx.META_PATH, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write('\n')
    total = sum(
        os.path.getsize(os.path.join(d, n))
        for d, _, names in os.walk(fx.FIXTURE_DIR)
        for n in names
    )
    print('wrote %s (%.2f MB)' % (fx.FIXTURE_DIR, total / 1e6))


if __name__ == '__main__':
    main()
