"""The `modelseal` command line: one module per command group over the layers below it.
"""
