"""The paper's figures: formation-energy hulls (Fig. 3) and requested-versus-found symmetry heatmaps (Fig. 2).

Static figures are matplotlib PNGs; the interactive versions are self-contained plotly HTML files (plotly.js
embedded, so they open offline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from .hull import HullRow, phase_diagram

if TYPE_CHECKING:
    import numpy as np
    from pymatgen.analysis.phase_diagram import PhaseDiagram

__all__ = [
    'CRYSTAL_SYSTEMS',
    'energy_distribution',
    'plot_energy_distribution',
    'plot_hull',
    'plot_stage_heatmap',
    'plot_symmetry_heatmap',
    'symmetry_fractions',
]

CRYSTAL_SYSTEMS = ('triclinic', 'monoclinic', 'orthorhombic', 'tetragonal', 'trigonal', 'hexagonal', 'cubic')
REFERENCE_COLOUR = '#1f77b4'
GENERATED_COLOUR = '#d62728'
NEAR_HULL = 0.1
"""eV/atom above the hull within which the quaternary plot shows a generated structure (the hull tolerance)."""


def _fraction(composition: object, element: str) -> float:
    return composition.get_atomic_fraction(element)  # type: ignore[attr-defined]


def _generated(rows: Sequence[HullRow], chemsys: str) -> list[HullRow]:
    return [
        r
        for r in rows
        if r.chemsys
        and set(r.chemsys.split('-')) <= set(chemsys.split('-'))
        and r.formation_energy_per_atom is not None
    ]


def _hull_lines(diagram: PhaseDiagram, elements: Sequence[str]) -> list[tuple[list[float], list[float]]]:
    """Binary hull as line segments in (fraction of the second element, formation energy per atom)."""
    points = sorted(
        (_fraction(e.composition, elements[1]), diagram.get_form_energy_per_atom(e)) for e in diagram.stable_entries
    )
    return [([a[0], b[0]], [a[1], b[1]]) for a, b in pairwise(points)]


def plot_hull(rows: Sequence[HullRow], chemsys: str, output: Path) -> list[Path]:
    """Binary or ternary formation-energy hull: reference phases and hull in blue, generated structures and the hull
    including them in red; a quaternary as pymatgen's tetrahedron (``PDPlotter``) of the hull including the generated
    structures. Writes ``output.png`` and ``output.html``.

    :param rows: the results table; rows outside ``chemsys`` are ignored.
    :param chemsys: e.g. ``Li-O``; two to four elements.
    """
    elements = chemsys.split('-')
    generated = _generated(rows, chemsys)
    extra = [(r.formula, r.formation_energy_per_atom, f'generated-{r.index}') for r in generated]
    reference = phase_diagram(elements)
    combined = phase_diagram(elements, extra)
    if len(elements) == 2:
        return _binary(reference, combined, generated, elements, output)
    if len(elements) == 3:
        return _ternary(reference, combined, generated, elements, output)
    if len(elements) == 4:
        return _quaternary(combined, generated, elements, output)
    raise ValueError(f'hull plots are for two to four elements, not {chemsys}')


def _binary(
    reference: PhaseDiagram, combined: PhaseDiagram, generated: Sequence[HullRow], elements: Sequence[str], output: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from pymatgen.core import Composition

    ref_x = [_fraction(e.composition, elements[1]) for e in reference.all_entries]
    ref_y = [reference.get_form_energy_per_atom(e) for e in reference.all_entries]
    gen_x = [_fraction(Composition(r.formula), elements[1]) for r in generated]
    gen_y = [r.formation_energy_per_atom for r in generated]
    names = [e.name for e in reference.all_entries]
    gen_names = [f'{r.formula} (SG {r.spacegroup_found}), E_hull {r.e_above_hull:+.3f}' for r in generated]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=150)
    for i, (x, y) in enumerate(_hull_lines(combined, elements)):
        ax.plot(x, y, color=GENERATED_COLOUR, ls='--', lw=1.5, label='hull incl. generated' if i == 0 else None)
    for i, (x, y) in enumerate(_hull_lines(reference, elements)):
        ax.plot(x, y, color=REFERENCE_COLOUR, lw=1.5, label='reference hull (MP)' if i == 0 else None)
    ax.scatter(ref_x, ref_y, s=18, color=REFERENCE_COLOUR, label='MP reference phases', zorder=3)
    ax.scatter(gen_x, gen_y, s=22, marker='x', color=GENERATED_COLOUR, label='generated (relaxed)', zorder=4)
    ax.set_xlabel(f'x in {elements[0]}$_{{1-x}}${elements[1]}$_x$')
    ax.set_ylabel('formation energy (eV/atom)')
    ax.set_title(f'{"-".join(elements)} convex hull')
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = output.with_suffix('.png')
    fig.savefig(png)
    plt.close(fig)
    figure = go.Figure()
    for hull, colour, name, dash in (
        (reference, REFERENCE_COLOUR, 'reference hull', None),
        (combined, GENERATED_COLOUR, 'hull incl. generated', 'dash'),
    ):
        xs, ys = zip(
            *sorted(
                (_fraction(e.composition, elements[1]), hull.get_form_energy_per_atom(e)) for e in hull.stable_entries
            )
        )
        figure.add_scatter(x=xs, y=ys, mode='lines', name=name, line={'color': colour, 'dash': dash})
    figure.add_scatter(
        x=ref_x, y=ref_y, mode='markers', name='MP reference', text=names, marker={'color': REFERENCE_COLOUR}
    )
    figure.add_scatter(
        x=gen_x,
        y=gen_y,
        mode='markers',
        name='generated',
        text=gen_names,
        marker={'color': GENERATED_COLOUR, 'symbol': 'x'},
    )
    figure.update_layout(xaxis_title=f'fraction of {elements[1]}', yaxis_title='formation energy (eV/atom)')
    html = output.with_suffix('.html')
    figure.write_html(html, include_plotlyjs=True)
    return [png, html]


def _ternary(
    reference: PhaseDiagram, combined: PhaseDiagram, generated: Sequence[HullRow], elements: Sequence[str], output: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import plotly.graph_objects as go
    from pymatgen.core import Composition

    def cartesian(composition: Composition) -> tuple[float, float]:
        b, c = (_fraction(composition, elements[1]), _fraction(composition, elements[2]))
        return b + c / 2, c * np.sqrt(3) / 2

    fig, ax = plt.subplots(figsize=(6, 5.4), dpi=150)
    ax.plot([0, 1, 0.5, 0], [0, 0, np.sqrt(3) / 2, 0], color='k', lw=0.8)
    for facet_hull, colour, style in ((reference, REFERENCE_COLOUR, '-'), (combined, GENERATED_COLOUR, '--')):
        for a, b in _tie_lines(facet_hull):
            (x1, y1), (x2, y2) = cartesian(a), cartesian(b)
            ax.plot([x1, x2], [y1, y2], color=colour, ls=style, lw=0.8)
    stable = reference.stable_entries
    points = [cartesian(e.composition) for e in stable]
    ax.scatter(*zip(*points), color=REFERENCE_COLOUR, s=20, zorder=3, label='reference hull phases')
    for entry, (x, y) in zip(stable, points):
        ax.annotate(entry.composition.reduced_formula, (x, y), fontsize=7, xytext=(3, 3), textcoords='offset points')
    if generated:
        gx, gy = zip(*(cartesian(Composition(r.formula)) for r in generated))
        ax.scatter(
            gx, gy, c=[r.e_above_hull for r in generated], cmap='Reds_r', marker='x', s=30, zorder=4, label='generated'
        )
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title(f'{"-".join(elements)}: reference tie lines (blue), incl. generated (red dashed)')
    ax.legend(fontsize=8, loc='upper right')
    fig.tight_layout()
    png = output.with_suffix('.png')
    fig.savefig(png)
    plt.close(fig)
    figure = go.Figure()
    entries = [
        ('reference', reference.get_form_energy_per_atom(e), e.composition, e.name) for e in reference.all_entries
    ]
    entries += [
        ('generated', r.formation_energy_per_atom, Composition(r.formula), f'{r.formula} SG {r.spacegroup_found}')
        for r in generated
    ]
    for kind, colour in (('reference', REFERENCE_COLOUR), ('generated', GENERATED_COLOUR)):
        chosen = [e for e in entries if e[0] == kind]
        figure.add_scatterternary(
            a=[_fraction(c, elements[0]) for _, _, c, _ in chosen],
            b=[_fraction(c, elements[1]) for _, _, c, _ in chosen],
            c=[_fraction(c, elements[2]) for _, _, c, _ in chosen],
            text=[f'{name}: {energy:.3f} eV/atom' for _, energy, _, name in chosen],
            mode='markers',
            name=kind,
            marker={'color': colour},
        )
    figure.update_layout(ternary={'aaxis_title': elements[0], 'baxis_title': elements[1], 'caxis_title': elements[2]})
    html = output.with_suffix('.html')
    figure.write_html(html, include_plotlyjs=True)
    return [png, html]


def _quaternary(combined: PhaseDiagram, generated: Sequence[HullRow], elements: Sequence[str], output: Path) -> list[Path]:
    """pymatgen's tetrahedron of the hull including the generated structures (``PDPlotter``), each phase named by its
    formula and the generated ones marked ``(gen.)``, as a PNG and an interactive HTML file. pymatgen's matplotlib
    tetrahedron shows only the hull's phases, so the generated structures within ``NEAR_HULL`` eV/atom of it are
    added as crosses, listed with their e_above_hull; the HTML shows them as pymatgen's unstable entries."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram

    def named(entry: PDEntry) -> PDEntry:
        suffix = ' (gen.)' if entry.attribute == 'generated' else ''
        return PDEntry(entry.composition, entry.energy, entry.composition.reduced_formula + suffix, entry.attribute)

    diagram = PhaseDiagram([named(entry) for entry in combined.all_entries])
    plotter = PDPlotter(diagram, show_unstable=NEAR_HULL, backend='matplotlib')
    axes = plotter.get_plot()
    near = {entry: coords for entry, coords in plotter.pd_plot_data[2].items()
            if entry.attribute == 'generated' and diagram.get_e_above_hull(entry) <= NEAR_HULL}
    if near:
        axes.scatter(*zip(*near.values()), marker='x', s=80, color=GENERATED_COLOUR, depthshade=False, zorder=5)
    lowest: dict[str, float] = {}
    for entry in near:  # a structure found several times is listed once, at its lowest energy
        lowest[entry.name] = min(lowest.get(entry.name, NEAR_HULL), diagram.get_e_above_hull(entry))
    listed = '\n'.join(f'{name} +{energy:.3f}' for name, energy in sorted(lowest.items(), key=lambda item: item[1]))
    axes.text2D(0.0, 0.88, f'generated within {NEAR_HULL} eV/atom (x):\n{listed or "none"}',
                transform=axes.transAxes, fontsize=9, color=GENERATED_COLOUR)
    axes.set_title(f'{"-".join(elements)} hull incl. {len(generated)} generated structures')
    png = output.with_suffix('.png')
    axes.figure.set_size_inches(7, 7)
    axes.figure.savefig(png, dpi=150)
    plt.close(axes.figure)
    html = output.with_suffix('.html')
    PDPlotter(diagram, show_unstable=NEAR_HULL, backend='plotly').get_plot().write_html(html, include_plotlyjs=True)
    return [png, html]


def _tie_lines(diagram: PhaseDiagram) -> set[tuple[object, object]]:
    lines = set()
    for facet in diagram.facets:
        compositions = [diagram.qhull_entries[i].composition for i in facet]
        for i in range(len(compositions)):
            for j in range(i + 1, len(compositions)):
                lines.add((compositions[i], compositions[j]))
    return lines


def symmetry_fractions(
    requested: Sequence[int],
    found: Sequence[int | None],
    groups: Sequence[int],
    by: str = 'crystal_system',
    categories: list[str] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rows (crystal systems or space groups found, then ``failed``), counts and column fractions of a heatmap:
    each column one requested space group, normalised so it shows where that group ended up.

    :param found: the space group found for each requested one, ``None`` where the relaxation failed.
    :param categories: the rows, where several heatmaps must share them [default: those found].
    """
    import numpy as np

    from .symmetry import spacegroup_info

    if by not in ('crystal_system', 'spacegroup'):
        raise ValueError(f'by must be crystal_system or spacegroup, not {by}')
    names = [
        'failed' if group is None else spacegroup_info(group).crystal_system if by == 'crystal_system' else str(group)
        for group in found
    ]
    if categories is None and by == 'crystal_system':
        categories = [*CRYSTAL_SYSTEMS, 'failed']
    elif categories is None:
        categories = sorted(set(names) - {'failed'}, key=int) + ['failed']
    rows, columns = {name: i for i, name in enumerate(categories)}, {group: i for i, group in enumerate(groups)}
    counts = np.zeros((len(categories), len(groups)))
    for group, name in zip(requested, names, strict=True):
        counts[rows[name], columns[group]] += 1
    return categories, counts, counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)


def _heatmap_panels(
    panels: Sequence[tuple[str, list[int], list[int | None]]], output: Path, by: str
) -> list[Path]:
    """One heatmap per ``(title, requested, found)`` side by side, on the same requested groups, as PNG and HTML."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = sorted({group for _, requested, _ in panels for group in requested})
    shared = None
    if by == 'spacegroup':  # the same rows in every panel
        shared = sorted({str(g) for _, _, found in panels for g in found if g is not None}, key=int) + ['failed']
    tables = [(title, *symmetry_fractions(requested, found, groups, by, shared)) for title, requested, found in panels]
    label = 'crystal system' if by == 'crystal_system' else 'space group'
    categories = tables[0][1]
    width = max(4.0, 0.35 * len(groups) + 2)
    fig, axes = plt.subplots(1, len(tables), figsize=(width * len(tables), max(4.0, 0.25 * len(categories) + 1)),
                             dpi=150, squeeze=False)
    for ax, (title, rows, _, fractions) in zip(axes[0], tables, strict=True):
        image = ax.imshow(fractions, cmap='viridis', vmin=0, vmax=1, aspect='auto', origin='lower')
        ax.set_xticks(range(len(groups)), [str(g) for g in groups], rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel('requested space group')
        if len(tables) > 1:
            ax.set_title(title, fontsize=10)
    axes[0][0].set_ylabel(f'{label} after relaxation')
    fig.colorbar(image, ax=axes[0].tolist(), label='fraction of requested')
    png = output.with_suffix('.png')
    fig.savefig(png, bbox_inches='tight')
    plt.close(fig)
    figure = make_subplots(rows=1, cols=len(tables), subplot_titles=[t[0] for t in tables] if len(tables) > 1 else None)
    for column, (_, rows, counts, fractions) in enumerate(tables, start=1):
        heatmap = go.Heatmap(z=fractions, x=[str(g) for g in groups], y=rows, text=counts, colorscale='Viridis',
                             zmin=0, zmax=1, showscale=column == len(tables))
        figure.add_trace(heatmap, row=1, col=column)
        figure.update_xaxes(title_text='requested space group', type='category', row=1, col=column)
        figure.update_yaxes(title_text=f'{label} after relaxation', type='category', row=1, col=column)
    html = output.with_suffix('.html')
    figure.write_html(html, include_plotlyjs=True)
    return [png, html]


def plot_symmetry_heatmap(rows: Sequence[HullRow], output: Path, by: str = 'crystal_system') -> list[Path]:
    """Requested space group against the crystal system (or space group) found after relaxation, as in Fig. 2.

    Each column is one requested space group, normalised so it shows where that group ended up; failed
    relaxations are their own row.

    :param by: ``crystal_system`` or ``spacegroup``, the quantity on the vertical axis.
    """
    requested = [r for r in rows if r.spacegroup_requested]
    found = [r.spacegroup_found for r in requested]
    return _heatmap_panels([('', [r.spacegroup_requested for r in requested], found)], output, by)


def plot_stage_heatmap(rows: Sequence[HullRow], output: Path) -> list[Path]:
    """Fig. 2 before and after free relaxation: the crystal system after the symmetric stage (every structure that
    finished it) beside the crystal system after the free stage (the structures near enough the hull to get one)."""
    staged = [r for r in rows if r.spacegroup_requested]  # a relaxation that failed has no stage: ``failed``
    free = [r for r in staged if len(r.stage_spacegroups) == 2]
    if not free:
        raise ValueError('no generated structure had a free stage: nothing to show after it')
    return _heatmap_panels(
        [
            (f'after the symmetric stage ({len(staged)})', [r.spacegroup_requested for r in staged],
             [r.stage_spacegroups[0] if r.stage_spacegroups else None for r in staged]),
            (f'after the free stage ({len(free)})', [r.spacegroup_requested for r in free],
             [r.stage_spacegroups[1] for r in free]),
        ],
        output,
        'crystal_system',
    )


ENERGY_BIN_WIDTH = 0.1
"""eV/atom: the usual "near the hull" tolerance, so the first bin is exactly the structures called stable."""
ENERGY_RANGE_MAX = 2.0
"""eV/atom; structures higher than this share the last bin."""


def energy_distribution(rows: Sequence[HullRow]) -> tuple[list[float], list[int], list[int]]:
    """Bin edges and counts of e_above_hull of the generated, relaxed structures: charge balanced, and not.

    Most structures far above the hull have compositions no common oxidation states can balance; the two
    histograms show how much of the distance to the hull that alone explains.
    """
    import numpy as np

    from .metrics import charge_balanced

    generated = [r for r in rows if r.spacegroup_requested and r.e_above_hull is not None]
    edges = np.linspace(0.0, ENERGY_RANGE_MAX, round(ENERGY_RANGE_MAX / ENERGY_BIN_WIDTH) + 1)
    # Below the reference hull counts in the first bin, beyond the range in the last.
    inside = (edges[0], edges[-1] - ENERGY_BIN_WIDTH / 2)
    is_balanced = [charge_balanced(r.formula) for r in generated]  # an oxidation-state search each: once per row
    balanced = [r.e_above_hull for r, ok in zip(generated, is_balanced) if ok]
    unbalanced = [r.e_above_hull for r, ok in zip(generated, is_balanced) if not ok]
    counts = [np.histogram(np.clip(values, *inside), bins=edges)[0].tolist() for values in (balanced, unbalanced)]
    return edges.tolist(), counts[0], counts[1]


def plot_energy_distribution(rows: Sequence[HullRow], output: Path) -> list[Path]:
    """Stacked histogram of e_above_hull, charge-balanced compositions against the rest (``energy_distribution``)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    edges, balanced, unbalanced = energy_distribution(rows)
    left, width = edges[:-1], ENERGY_BIN_WIDTH
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=150)
    ax.bar(left, balanced, width=width, align='edge', color=REFERENCE_COLOUR, label='charge balanced')
    ax.bar(left, unbalanced, width=width, align='edge', bottom=balanced, color=GENERATED_COLOUR, alpha=0.7,
           label='not charge balanced')
    ax.set_xlabel(f'e_above_hull (eV/atom; the last bin: above {ENERGY_RANGE_MAX - width:g})')
    ax.set_ylabel('generated structures')
    ax.legend(frameon=False)
    fig.tight_layout()
    png = output.with_suffix('.png')
    fig.savefig(png)
    plt.close(fig)
    centres = [edge + width / 2 for edge in left]
    figure = go.Figure([
        go.Bar(x=centres, y=balanced, width=width, name='charge balanced', marker_color=REFERENCE_COLOUR),
        go.Bar(x=centres, y=unbalanced, width=width, name='not charge balanced', marker_color=GENERATED_COLOUR),
    ])
    figure.update_layout(barmode='stack', xaxis_title='e_above_hull (eV/atom)', yaxis_title='generated structures')
    html = output.with_suffix('.html')
    figure.write_html(html, include_plotlyjs=True)
    return [png, html]


def write_report(
    rows: Sequence[HullRow], elemental: dict[str, float], output_dir: Path, sources: Mapping[str, str] | None = None
) -> list[Path]:
    """The results table (CSV and JSON), a hull plot per system of two to four elements, the symmetry heatmaps and the
    e_above_hull histogram.

    :param elemental: the elemental reference energies (eV/atom) the formation energies used, recorded in the JSON.
    :param sources: where each element's reference structure came from (an MP id or the library's), in the JSON.
    :return: the files written.
    """
    import json

    import pandas as pd

    output_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([row.as_dict() for row in rows])
    table.to_csv(output_dir / 'table.csv', index=False)
    document = {
        'elemental_energies': elemental,
        'elemental_sources': dict(sources or {}),
        'rows': table.to_dict('records'),
    }
    (output_dir / 'table.json').write_text(json.dumps(document, indent=1))
    written = [output_dir / 'table.csv', output_dir / 'table.json']
    systems = {r.chemsys for r in rows if r.formation_energy_per_atom is not None and r.chemsys.count('-') in (1, 2, 3)}
    for chemsys in sorted(systems):
        written += plot_hull(rows, chemsys, output_dir / f'hull_{chemsys}')
    if any(row.spacegroup_requested for row in rows):
        written += plot_symmetry_heatmap(rows, output_dir / 'symmetry_heatmap')
        written += plot_symmetry_heatmap(rows, output_dir / 'spacegroup_heatmap', by='spacegroup')
    if any(row.spacegroup_requested and len(row.stage_spacegroups) == 2 for row in rows):
        written += plot_stage_heatmap(rows, output_dir / 'symmetry_heatmap_stages')
    if any(row.spacegroup_requested and row.e_above_hull is not None for row in rows):
        written += plot_energy_distribution(rows, output_dir / 'energy_distribution')
    return written
