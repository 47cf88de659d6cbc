"""DEAR (Dissect and Prune, ICML 2026) on the ResNet-50 nodown detectors.

inpaint (diagnostic set) -> dissect (RAD per channel) -> prune (bilateral 0/1 gate) ->
refine (head refit, `detectors.head.refit_head`) -> checkpoint (official format);
`pipeline.run_dear` chains them, `detectors` registers DEAR-c / DEAR-r, `analyses` redoes the
paper's figures on AIGI-mini. Official code: github.com/dahyedahye/dear.
"""
