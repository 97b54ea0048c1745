"""The model of the Linux buffered write path.

One module per kernel source file it follows; functions carry the kernel's names. Nothing in this
package imports the tool's machinery (scenarios, command line, output): data flows one way, from
the machinery into the model and back out as events and return values.
"""
