"""The neurocomp intermediate representation: typed ops in a networkx DiGraph."""
from neurocomp.ir import ops
from neurocomp.ir.graph import (add_op, bypass, copy_graph, graphs_equal, input_nodes, inputs_of,
                                load, new_graph, op, output_nodes, replace_input, save, topo_order,
                                validate)
from neurocomp.ir.ops import IRError
from neurocomp.ir.reference import predict, run_float

__all__ = ["ops", "IRError", "add_op", "bypass", "copy_graph", "graphs_equal", "input_nodes",
           "inputs_of", "load", "new_graph", "op", "output_nodes", "replace_input", "save",
           "topo_order", "validate", "run_float", "predict"]
