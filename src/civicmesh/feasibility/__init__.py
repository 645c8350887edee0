"""The economic feasibility evaluator: a project file in, the numbers a finance bureau asks for out."""
