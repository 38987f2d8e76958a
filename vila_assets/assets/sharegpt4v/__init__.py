"""placeholder: being rewritten"""
import dagster as dg

defs = dg.Definitions()
