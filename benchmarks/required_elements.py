"""Samples returned, chains run and labels drawn by when the chain starts to require missing elements.

``SamplingConfig.require_elements_from`` is the share of the reverse chain after which a requested element the
predicted structure lacks is required at its likeliest position (1: never, redrawing only). For rare requests of
three and four elements (docs/spacegroups.md), with the shipped checkpoint, e_above_hull = 0 and seed 0:

    python benchmarks/required_elements.py [SHARE ...]   # default: 1 0.9 0.75 0.5 0.25 0
"""

from __future__ import annotations

import sys
from collections import Counter

CASES = (
    (('Al', 'Mg', 'O'), (227,), 16, 'A2BC4_cF56_227_c_b_e:Al-Mg-O'),
    (('Ba', 'In', 'O', 'Ta'), (225,), 16, 'A2BC6D_cF40_225_c_a_e_b:Ba-In-O-Ta'),
    (('Ba', 'In', 'O', 'Ta'), (9, 160), 4, None),
    (('Al', 'Mg', 'O'), (33, 166, 194, 15), 8, None),
)
"""Chemical system, space groups, samples and the label of the system's real crystal in those groups, if one."""


def main(shares: list[float]) -> None:
    import torch

    from aiida_wyckoffdiff.model.config import SamplingConfig
    from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate_json

    torch.set_num_threads(1)
    print('share | request | returned | chains | rejected | seconds | real label | distinct labels')
    for share in shares:
        for chemsys, groups, samples, real in CASES:
            request = GenerationRequest(chemsys, groups, e_above_hull=0.0, num_samples=samples)
            document = generate_json(request, SamplingConfig(require_elements_from=share), seed=0)
            meta, labels = document['meta'], Counter(s['protostructure'] for s in document['samples'])
            print(f"{share:g} | {'-'.join(chemsys)} in {groups} | {len(document['samples'])} of {samples} | "
                  f"{meta['num_drawn']} | {meta['rejected']} | {meta['seconds']:.1f} | "
                  f"{labels.get(real, 0) if real else '-'} | {len(labels)}", flush=True)


if __name__ == '__main__':
    main([float(share) for share in sys.argv[1:]] or [1.0, 0.9, 0.75, 0.5, 0.25, 0.0])
