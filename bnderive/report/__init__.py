"""Reports: one model of what was checked and found, printed as LaTeX (and PDF) or Markdown.

``build.build_report`` runs the library (check, check-impl, emit) and gathers the sections into
``model.Report``; ``latex.LatexReport`` and ``markdown.MarkdownReport`` print the same model;
``pdf.compile_pdf`` runs TeX Live on the LaTeX, shell escape off; ``library`` gives the results
of ``bnderive.check`` and ``bnderive.check_impl`` their Jupyter views.
"""
