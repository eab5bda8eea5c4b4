"""The bench's 2 KiB JSON-like records (BenchScenario.swift's benchRecords), written
one after another to stdout, for deflate-tune.c: python3 records.py > /tmp/recs.bin"""
import sys
cities=["Lisbon","Osaka","Lagos","Quito","Tallinn","Perth","Montreal","Pune"]
def rec(index,size=2048):
    t='{"batch":%d,"users":['%index; f=0
    while len(t)<size:
        i=(index*7919+f*104729)%1000003
        t+='{"id":%d,"name":"user%d","city":"%s",'%(i,i%9973,cities[(index+f)%8])
        t+='"active":%s,"score":%s,"tags":["t%d","g%d"]},'%("true" if i%3==0 else "false",repr((i%10000)/100),i%17,f%5)
        f+=1
    return t.encode()[:size]
recs=[rec(i) for i in range(512)]
sys.stdout.buffer.write(b''.join(recs))
