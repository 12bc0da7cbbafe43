"""Pure figure factories: data in, plotly Figure out. Tested on fig.data, no browser."""
