"""Variable-length columns as fixed shapes: padding and packing rules
(`packing`), the packer that resumes exactly (`packer`), and what a batch's
ragged columns become on delivery (`delivery`)."""
