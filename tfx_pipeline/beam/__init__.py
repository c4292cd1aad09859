"""Apache Beam building blocks of the data components, as composite PTransforms.

Everything here runs on any Beam runner: DoFns load what they need in
`setup()` and keep no state between bundles beyond that.
"""
